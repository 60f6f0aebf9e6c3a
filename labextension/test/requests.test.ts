// @vitest-environment jsdom
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { EndpointsModel, IEndpointsClient } from '../src/endpointsModel';
import {
  callSize,
  describeTiming,
  IRecentRequest,
  IRecentRequests,
  place,
  RecentRequestsView,
  renderBar,
  renderWaterfall,
  requestTotal,
  segments
} from '../src/requests';
import { IEndpoint } from '../src/tokens';

const trans = nullTranslator.load('edgebook');

function request(id: string, worker = 6, calls = true): IRecentRequest {
  return {
    time: 1700000000,
    method: 'GET',
    target: `/items?id=${id}`,
    status: 200,
    request_id: id,
    phases: [
      { name: 'route', offset_ms: 0, duration_ms: 1 },
      { name: 'recv', offset_ms: 1, duration_ms: 1 },
      { name: 'queue', offset_ms: 2, duration_ms: 2 },
      { name: 'worker', offset_ms: 4, duration_ms: worker }
    ],
    calls: calls
      ? [{ kind: 'db', op: 'db.query', offset_ms: 5, duration_ms: 3 }]
      : [],
    write_ms: 0.05
  };
}

describe('bar layout', () => {
  it('totals a request to the end of its last phase or call', () => {
    expect(requestTotal(request('a'))).toBe(10);
    const late = request('b');
    late.calls[0].duration_ms = 20; // a call reported past the worker's end still fits
    expect(requestTotal(late)).toBe(25);
    expect(requestTotal({ ...request('c'), phases: [], calls: [] })).toBe(0);
  });

  it('places pieces in percent of the scale', () => {
    expect(place(4, 6, 10)).toEqual({ left: 40, width: 60 });
    expect(place(0, 5, 20)).toEqual({ left: 0, width: 25 });
  });

  it('keeps too-short pieces visible and inside the bar', () => {
    expect(place(2, 0.001, 10)).toEqual({ left: 20, width: 0.5 });
    expect(place(10, 0, 10)).toEqual({ left: 99.5, width: 0.5 });
    expect(place(0, 50, 10)).toEqual({ left: 0, width: 100 });
    expect(place(1, 1, 0)).toEqual({ left: 0, width: 0 });
  });

  it('stacks the phases end to end and draws calls inside worker', () => {
    const pieces = segments(request('a'));
    expect(pieces.map(p => [p.label, p.left, p.width])).toEqual([
      ['route', 0, 10],
      ['recv', 10, 10],
      ['queue', 20, 20],
      ['worker', 40, 60],
      ['db.query', 50, 30]
    ]);
    const worker = pieces[3];
    const call = pieces[4];
    expect(call.type).toBe('call');
    expect(call.kind).toBe('db');
    expect(call.left).toBeGreaterThanOrEqual(worker.left);
    expect(call.left + call.width).toBeLessThanOrEqual(
      worker.left + worker.width
    );
    const sum = pieces
      .filter(p => p.type === 'phase')
      .reduce((total, p) => total + p.width, 0);
    expect(sum).toBeCloseTo(100);
  });

  it('scales to a common total so requests compare', () => {
    const pieces = segments(request('a'), 20);
    expect(pieces[3]).toMatchObject({ left: 20, width: 30 });
  });

  it('describes the timing in words for screen readers', () => {
    expect(describeTiming(request('a'), 'en-US')).toBe(
      'route 1.0 ms, recv 1.0 ms, queue 2.0 ms, worker 6.0 ms, db.query 3.0 ms'
    );
  });
});

describe('rendering', () => {
  it('draws a bar with one positioned span per phase and call', () => {
    const bar = renderBar(request('a'), 'the label');
    expect(bar.getAttribute('role')).toBe('img');
    expect(bar.getAttribute('aria-label')).toBe('the label');
    const spans = [...bar.querySelectorAll<HTMLElement>('span')];
    expect(spans.map(s => [s.className, s.dataset.kind])).toEqual([
      ['eb-Phase', 'route'],
      ['eb-Phase', 'recv'],
      ['eb-Phase', 'queue'],
      ['eb-Phase', 'worker'],
      ['eb-Call', 'db']
    ]);
    expect(parseFloat(spans[3].style.left)).toBeCloseTo(40.0);
    expect(parseFloat(spans[3].style.width)).toBeCloseTo(60.0);
  });

  it('lays out a waterfall row per phase and call, with ms numbers', () => {
    const table = renderWaterfall(request('a'), trans, 'en-US');
    expect(table.querySelector('caption')?.textContent).toBe(
      'GET /items?id=a: 10 ms in the gateway'
    );
    const rows = [...table.querySelectorAll('tbody tr')].map(row =>
      [...row.children].slice(0, 3).map(cell => cell.textContent)
    );
    expect(rows).toEqual([
      ['route', '0.00 ms', '1.0 ms'],
      ['recv', '1.0 ms', '1.0 ms'],
      ['queue', '2.0 ms', '2.0 ms'],
      ['worker', '4.0 ms', '6.0 ms'],
      ['db.query', '5.0 ms', '3.0 ms'],
      ['write', '10 ms', '0.05 ms']
    ]);
    const call = table.querySelector<HTMLElement>(
      'tr[data-type="call"] .eb-Call'
    )!;
    expect(parseFloat(call.style.left)).toBeCloseTo(50.0);
    expect(parseFloat(call.style.width)).toBeCloseTo(30.0);
    expect(table.querySelector('.eb-CallSize')).toBeNull(); // the call did not say
  });

  it('shows what a call moved when the gateway knows', () => {
    const withRows = request('a');
    withRows.calls = [
      { ...withRows.calls[0], rows: 120 },
      {
        kind: 'storage',
        op: 'objects.get',
        offset_ms: 8,
        duration_ms: 1,
        bytes: 1
      }
    ];
    const table = renderWaterfall(withRows, trans, 'en-US');
    const names = [...table.querySelectorAll('tr[data-type="call"] th')].map(
      cell => cell.textContent
    );
    expect(names).toEqual(['db.query 120 rows', 'objects.get 1 byte']);
    expect(callSize({ ...withRows.calls[0], rows: 1 }, trans)).toBe('1 row');
  });
});

class FakeClient implements IEndpointsClient {
  async list(): Promise<IEndpoint[]> {
    return [];
  }
  async act(): Promise<void> {}
  async remove(): Promise<void> {}
}

describe('RecentRequestsView', () => {
  let model: EndpointsModel;
  let view: RecentRequestsView;
  let answer: IRecentRequests;
  let fetches: string[];

  beforeEach(() => {
    vi.useFakeTimers();
    model = new EndpointsModel({ client: new FakeClient(), pollInterval: 1e6 });
    answer = {
      name: 'get_items',
      requests: [request('r2', 16), request('r1', 6, false)]
    };
    fetches = [];
    view = new RecentRequestsView({
      name: 'get_items',
      model,
      trans,
      locale: 'en-US',
      interval: () => 1000,
      fetch: async name => {
        fetches.push(name);
        return answer;
      }
    });
    Widget.attach(view, document.body);
  });

  afterEach(() => {
    view.dispose();
    model.dispose();
    vi.useRealTimers();
  });

  it('lists the requests as buttons, each with status, total and a phase bar', async () => {
    await view.load();
    const items = [
      ...view.node.querySelectorAll<HTMLButtonElement>('button.eb-RequestItem')
    ];
    expect(items.map(b => b.dataset.requestId)).toEqual(['r2', 'r1']);
    expect(items[0].querySelector('.eb-Status')?.textContent).toBe('200');
    expect(items[0].querySelector('.eb-Latency')?.textContent).toBe('20 ms');
    expect(items[0].getAttribute('aria-label')).toMatch(
      /^GET \/items\?id=r2, status 200, 20 ms at /
    );
    const bar = items[0].querySelector<HTMLElement>('.eb-TimingBar')!;
    expect(items[0].getAttribute('aria-describedby')).toBe(bar.id);
    expect(bar.getAttribute('aria-label')).toBe(
      'route 1.0 ms, recv 1.0 ms, queue 2.0 ms, worker 16 ms, db.query 3.0 ms'
    );
    // One scale for the list: the shorter request's bar ends halfway.
    const worker = items[1].querySelector<HTMLElement>(
      '.eb-Phase[data-kind="worker"]'
    )!;
    expect(parseFloat(worker.style.left)).toBeCloseTo(20.0);
    expect(parseFloat(worker.style.width)).toBeCloseTo(30.0);
    expect(items[1].querySelectorAll('.eb-Call')).toHaveLength(0);
  });

  it('shows the waterfall of the request clicked', async () => {
    await view.load();
    const item = view.node.querySelector<HTMLButtonElement>(
      'button[data-request-id="r1"]'
    )!;
    item.click();
    expect(item.getAttribute('aria-pressed')).toBe('true');
    const detail = view.node.querySelector('.eb-RequestDetail')!;
    expect(detail.querySelector('h3')?.textContent).toBe('Request r1');
    expect(detail.querySelectorAll('tbody tr')).toHaveLength(5);
  });

  it('refreshes on its interval and keeps the picked request', async () => {
    await view.load();
    view.select('r1');
    answer = {
      name: 'get_items',
      requests: [request('r3'), ...answer.requests]
    };
    await vi.advanceTimersByTimeAsync(1000);
    expect(fetches.length).toBeGreaterThanOrEqual(2);
    expect(view.requests.map(r => r.request_id)).toEqual(['r3', 'r2', 'r1']);
    expect(
      view.node
        .querySelector('button[data-request-id="r1"]')
        ?.getAttribute('aria-pressed')
    ).toBe('true');
  });

  it('reads nothing while not following or hidden, and reads at once when following again', async () => {
    await vi.advanceTimersByTimeAsync(10);
    const box = view.node.querySelector<HTMLInputElement>(
      'input[type="checkbox"]'
    )!;
    box.checked = false;
    box.dispatchEvent(new Event('change'));
    let before = fetches.length;
    await vi.advanceTimersByTimeAsync(5000);
    expect(fetches.length).toBe(before);

    box.checked = true;
    box.dispatchEvent(new Event('change'));
    await vi.advanceTimersByTimeAsync(10);
    expect(fetches.length).toBe(before + 1);

    view.hide();
    before = fetches.length;
    await vi.advanceTimersByTimeAsync(5000);
    expect(fetches.length).toBe(before);
    view.show();
    await vi.advanceTimersByTimeAsync(2100);
    expect(fetches.length).toBeGreaterThanOrEqual(before + 2);
  });

  it('says when there are no requests yet', async () => {
    answer = { name: 'get_items', requests: [] };
    await view.load();
    expect(view.node.querySelector('.eb-RequestList')?.textContent).toContain(
      'No requests yet'
    );
  });
});
