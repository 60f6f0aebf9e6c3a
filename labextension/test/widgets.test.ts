// @vitest-environment jsdom
import { nullTranslator } from '@jupyterlab/translation';
import {
  runIcon,
  stopIcon,
  deleteIcon,
  refreshIcon,
  listIcon,
  fileIcon,
  terminalIcon,
  linkIcon,
  copyIcon,
  tableRowsIcon
} from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { RequestBuilder } from '../src/builder';
import { rovingToolbar, StatusRegion } from '../src/dom';
import { EndpointList } from '../src/endpoints';
import {
  EndpointsModel,
  IBusEmission,
  IEndpointsClient
} from '../src/endpointsModel';
import { APIError, encodeRequestHeaders } from '../src/handler';
import { errorMessage } from '../src/model';
import {
  CommandIDs,
  ENDPOINT_COMMANDS,
  GATEWAY_EVENT_SCHEMA,
  IEndpoint
} from '../src/tokens';

import { endpoint } from './fakes';

const trans = nullTranslator.load('edgebook');
const METRICS = { requests: 12345, errors: 0, p50: 1.5, p99: 3 };

class FakeClient implements IEndpointsClient {
  endpoints: IEndpoint[] = [
    endpoint('alpha', 'running', METRICS),
    endpoint('beta', 'stopped', METRICS)
  ];
  async list(): Promise<IEndpoint[]> {
    return this.endpoints.map(e => ({ ...e }));
  }
  async act(): Promise<void> {}
  async remove(): Promise<void> {}
}

const ICONS = [
  runIcon,
  stopIcon,
  refreshIcon,
  listIcon,
  fileIcon,
  tableRowsIcon,
  terminalIcon,
  linkIcon,
  copyIcon,
  deleteIcon
];

/** The endpoint commands with plain labels, recording what they were asked to do. */
function commandsFor(model: EndpointsModel, calls: string[]): CommandRegistry {
  const commands = new CommandRegistry();
  ENDPOINT_COMMANDS.forEach((id, i) => {
    commands.addCommand(id, {
      label: args => `${id.split(':')[1]} ${String(args.name ?? '')}`.trim(),
      icon: ICONS[i],
      isEnabled: args =>
        id !== CommandIDs.start ||
        model.views.get(String(args.name))?.state !== 'running',
      execute: args => {
        calls.push(`${id} ${String(args.name)}`);
      }
    });
  });
  return commands;
}

describe('EndpointList', () => {
  let model: EndpointsModel;
  let list: EndpointList;
  let status: StatusRegion;
  let calls: string[];
  let client: FakeClient;

  beforeEach(async () => {
    vi.useFakeTimers();
    client = new FakeClient();
    model = new EndpointsModel({ client, pollInterval: 60000 });
    calls = [];
    status = new StatusRegion();
    document.body.append(status.node);
    list = attachedList(model);
    await model.refresh();
  });

  /** A list of `of`'s endpoints, attached, with this suite's commands and status region. */
  function attachedList(of: EndpointsModel): EndpointList {
    const widget = new EndpointList({
      model: of,
      commands: commandsFor(of, calls),
      trans,
      status,
      locale: 'de-DE'
    });
    Widget.attach(widget, document.body);
    return widget;
  }

  afterEach(() => {
    list.dispose();
    model.dispose();
    status.node.remove();
    vi.useRealTimers();
  });

  it('shows the empty state when the model loaded an empty list before the list existed', async () => {
    client.endpoints = [];
    const early = new EndpointsModel({ client, pollInterval: 60000 });
    await early.refresh();
    const late = attachedList(early);
    const empty = late.node.querySelector<HTMLElement>('.eb-Empty');
    expect(empty?.hidden).toBe(false);
    expect(late.node.querySelectorAll('li.eb-Endpoint').length).toBe(0);
    late.dispose();
    early.dispose();
  });

  it('says in its banner when Jupyter gave up restarting the gateway', async () => {
    const failing = new EndpointsModel({
      client: {
        list: async () => {
          const body = {
            error:
              'the edgebook gateway is not running: it exited with status 1; Jupyter stopped restarting it (fix the cause, then restart Jupyter)',
            error_type: 'gateway_failed'
          };
          throw new APIError(503, errorMessage(body, 503), body);
        },
        act: async () => undefined,
        remove: async () => undefined
      },
      pollInterval: 60000
    });
    const panel = attachedList(failing);
    await failing.refresh();
    expect(failing.status).toBe('offline');
    const banner = panel.node.querySelector<HTMLElement>(
      '.eb-Banner[role="alert"]'
    );
    expect(banner?.hidden).toBe(false);
    expect(banner?.textContent).toBe(
      'Cannot list endpoints: the edgebook gateway is not running: it exited with status 1; Jupyter stopped restarting it (fix the cause, then restart Jupyter) (gateway_failed)'
    );
    panel.dispose();
    failing.dispose();
  });

  it('shows one row per endpoint with numbers in the given locale', () => {
    const rows = list.node.querySelectorAll('li.eb-Endpoint');
    expect([...rows].map(r => (r as HTMLElement).dataset.name)).toEqual([
      'alpha',
      'beta'
    ]);
    expect(rows[0].querySelector('[data-stat="requests"]')?.textContent).toBe(
      '12.345 req'
    );
    expect(rows[0].querySelector('[data-stat="p50"]')?.textContent).toBe(
      'p50 1,5 ms'
    );
  });

  it('runs commands from the row buttons, with the row as argument', () => {
    const row = list.rowNode('beta')!;
    row
      .querySelector<HTMLButtonElement>(
        `button[data-command="${CommandIDs.openLogs}"]`
      )!
      .click();
    expect(calls).toEqual([`${CommandIDs.openLogs} beta`]);
    const start = list
      .rowNode('alpha')!
      .querySelector<HTMLButtonElement>(
        `button[data-command="${CommandIDs.start}"]`
      )!;
    expect(start.disabled).toBe(true);
  });

  it('gives each row toolbar one tab stop and moves with the arrow keys', () => {
    const toolbar = list
      .rowNode('beta')!
      .querySelector<HTMLElement>('[role="toolbar"]')!;
    const buttons = [...toolbar.querySelectorAll('button')];
    expect(buttons).toHaveLength(ENDPOINT_COMMANDS.length);
    expect(buttons.filter(b => b.tabIndex === 0)).toHaveLength(1);
    buttons[0].focus();
    const press = (key: string) =>
      document.activeElement!.dispatchEvent(
        new KeyboardEvent('keydown', { key, bubbles: true })
      );
    press('ArrowRight');
    expect(document.activeElement).toBe(buttons[1]);
    expect(buttons.filter(b => b.tabIndex === 0)).toEqual([buttons[1]]);
    press('End');
    expect(document.activeElement).toBe(buttons[buttons.length - 1]);
    press('ArrowRight');
    expect(document.activeElement).toBe(buttons[0]);
    press('ArrowLeft');
    expect(document.activeElement).toBe(buttons[buttons.length - 1]);
  });

  it('announces changes in the one shared status region, not per row', async () => {
    expect(
      list.node.querySelectorAll('[aria-live], [role="status"]')
    ).toHaveLength(0);
    client.endpoints = [endpoint('alpha', 'stopped', METRICS)];
    await model.refresh();
    await vi.advanceTimersByTimeAsync(100);
    expect(list.rowNode('beta')).toBeNull();
    expect(status.node.textContent).toBe('alpha is stopped');
    expect(status.node.getAttribute('aria-live')).toBe('polite');
  });

  it('shows build progress on the row the model names', () => {
    const bus = { stream: new Signal<unknown, IBusEmission>({}) };
    const live = new EndpointsModel({
      client,
      events: bus,
      pollInterval: 60000
    });
    const other = new EndpointList({
      model: live,
      commands: commandsFor(live, calls),
      trans,
      status
    });
    return live.refresh().then(() => {
      bus.stream.emit({
        schema_id: GATEWAY_EVENT_SCHEMA,
        type: 'hello',
        seq: 1
      });
      bus.stream.emit({
        schema_id: GATEWAY_EVENT_SCHEMA,
        type: 'build',
        seq: 2,
        endpoint: 'beta',
        phase: 'progress',
        message: 'Compiling serde'
      });
      const progress = other.rowNode('beta')!.querySelector('.eb-Progress')!;
      expect(progress.textContent).toBe('Compiling serde');
      other.dispose();
      live.dispose();
    });
  });
});

describe('rovingToolbar', () => {
  it('skips disabled buttons', () => {
    const toolbar = document.createElement('div');
    toolbar.innerHTML =
      '<button>a</button><button disabled>b</button><button>c</button>';
    document.body.append(toolbar);
    rovingToolbar(toolbar);
    const [a, , c] = [...toolbar.querySelectorAll('button')];
    a.focus();
    a.dispatchEvent(
      new KeyboardEvent('keydown', { key: 'ArrowRight', bubbles: true })
    );
    expect(document.activeElement).toBe(c);
    toolbar.remove();
  });
});

describe('RequestBuilder', () => {
  let builder: RequestBuilder;
  const field = (label: RegExp) => {
    const labels = [...builder.node.querySelectorAll('label')];
    const target = labels.find(l => label.test(l.textContent ?? ''))!;
    return builder.node.querySelector<HTMLTextAreaElement>(
      `#${target.htmlFor}`
    )!;
  };
  const type = (label: RegExp, value: string) => {
    const input = field(label);
    input.value = value;
    input.dispatchEvent(new Event('input'));
  };
  const send = () =>
    [...builder.node.querySelectorAll('button')].find(
      b => b.textContent === 'Send'
    )!;

  beforeEach(() => {
    builder = new RequestBuilder({ trans });
    Widget.attach(builder, document.body);
  });

  afterEach(() => builder.dispose());

  it('accepts a CSV body without checking it as JSON', () => {
    type(/^Headers/, 'Content-Type: text/csv');
    type(/^Body$/, 'a,b\n1,2\n');
    expect(send().disabled).toBe(false);
    expect(builder.node.textContent).not.toContain('Invalid JSON');
  });

  it('checks the body as JSON only when the typed content type is JSON', () => {
    type(/^Body$/, '{"a": }');
    expect(send().disabled).toBe(false);
    type(/^Headers/, 'Content-Type: application/problem+json');
    expect(send().disabled).toBe(true);
    expect(builder.node.textContent).toContain(
      'Invalid JSON: line 1, column 7'
    );
  });

  it('warns when Authorization or Cookie is typed', () => {
    const warning = builder.node.querySelector<HTMLElement>('.eb-Warning')!;
    expect(warning.hidden).toBe(true);
    type(/^Headers/, 'Authorization: Bearer x\nCookie: a=1');
    expect(warning.hidden).toBe(false);
    expect(warning.textContent).toContain(
      'Authorization, Cookie goes to your endpoint only'
    );
  });
});

describe('encodeRequestHeaders', () => {
  it('round-trips names and non-ASCII values through base64 JSON', () => {
    const pairs: [string, string][] = [
      ['Content-Type', 'text/csv'],
      ['X-Name', 'Zoë']
    ];
    const bytes = Uint8Array.from(atob(encodeRequestHeaders(pairs)), c =>
      c.charCodeAt(0)
    );
    expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual(pairs);
  });
});
