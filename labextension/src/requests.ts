/**
 * An endpoint's recent requests (`GET /edgebook/api/endpoints/{name}/requests`, newest
 * first, up to 50), each with a stacked bar of where its time went in the gateway, and the
 * waterfall of the one picked: every phase and service call as a row at its offset.
 */
import { TranslationBundle } from '@jupyterlab/translation';

import { h } from './dom';
import { FollowingView, IFollowingViewOptions } from './follow';
import { endpointPath, requestAPI } from './handler';
import { formatMs } from './model';

/** One gateway phase of a request (`route`, `recv`, `queue`, `worker`). */
export interface IRequestPhase {
  name: string;
  offset_ms: number;
  duration_ms: number;
}

/** One service call the handler made (`db` / `db.query`), timed by the gateway. */
export interface IServiceCall {
  kind: string;
  op: string;
  offset_ms: number;
  duration_ms: number;
  /** Rows the call read or changed, when the gateway knows (SQL, document lists). */
  rows?: number;
  /** Bytes of the value or object the call moved, when the gateway knows. */
  bytes?: number;
}

/** "3 rows" / "1,024 bytes" for a call that says what it moved, else "". */
export function callSize(
  call: IServiceCall,
  trans: TranslationBundle,
  locale?: string
): string {
  const count = (n: number) => new Intl.NumberFormat(locale).format(n);
  if (typeof call.rows === 'number') {
    return trans._n('%1 row', '%1 rows', call.rows, count(call.rows));
  }
  if (typeof call.bytes === 'number') {
    return trans._n('%1 byte', '%1 bytes', call.bytes, count(call.bytes));
  }
  return '';
}

/** One answered request, as the gateway's `RequestTiming.to_dict` plus its head. */
export interface IRecentRequest {
  /** Epoch seconds. */
  time: number;
  method: string;
  target: string;
  status: number;
  request_id: string;
  phases: IRequestPhase[];
  calls: IServiceCall[];
  write_ms: number | null;
}

/** `GET /edgebook/api/endpoints/{name}/requests` */
export interface IRecentRequests {
  name: string;
  requests: IRecentRequest[];
}

/** A bar piece: where it starts and how wide it is, in percent of the bar. */
export interface ISegment {
  /** The phase name, or the call's operation. */
  label: string;
  /** `phase` or `call`; `kind` is the phase name or the call's kind (colour). */
  type: 'phase' | 'call';
  /** The service call this piece draws (calls only). */
  call?: IServiceCall;
  kind: string;
  offsetMs: number;
  durationMs: number;
  left: number;
  width: number;
}

/** Milliseconds from the request's head to its reply: the end of its last phase or call. */
export function requestTotal(request: IRecentRequest): number {
  let end = 0;
  for (const piece of [...request.phases, ...request.calls]) {
    end = Math.max(end, piece.offset_ms + piece.duration_ms);
  }
  return end;
}

const clampPercent = (value: number) => Math.min(100, Math.max(0, value));

/**
 * Places `[offset, offset + duration]` on a bar `scaleMs` wide, in percent. Pieces too short
 * to see get `minWidth` percent (pulled left so they stay inside the bar).
 */
export function place(
  offsetMs: number,
  durationMs: number,
  scaleMs: number,
  minWidth = 0.5
): { left: number; width: number } {
  if (!(scaleMs > 0)) {
    return { left: 0, width: 0 };
  }
  let left = clampPercent((offsetMs / scaleMs) * 100);
  let width = clampPercent((Math.max(0, durationMs) / scaleMs) * 100);
  width = Math.min(Math.max(width, minWidth), 100);
  if (left + width > 100) {
    left = 100 - width;
  }
  return { left, width };
}

/**
 * A request's phases then its service calls, each placed on a bar `scaleMs` wide (its
 * own total by default, so the phases fill the bar; pass the longest request's total to
 * compare requests). Calls happen inside `worker` and are drawn there.
 */
export function segments(
  request: IRecentRequest,
  scaleMs = requestTotal(request),
  minWidth = 0.5
): ISegment[] {
  const phases = request.phases.map(p => ({
    label: p.name,
    type: 'phase' as const,
    kind: p.name,
    offsetMs: p.offset_ms,
    durationMs: p.duration_ms,
    ...place(p.offset_ms, p.duration_ms, scaleMs, minWidth)
  }));
  const calls = request.calls.map(c => ({
    label: c.op,
    type: 'call' as const,
    call: c,
    kind: c.kind,
    offsetMs: c.offset_ms,
    durationMs: c.duration_ms,
    ...place(c.offset_ms, c.duration_ms, scaleMs, minWidth)
  }));
  return [...phases, ...calls];
}

/** "route 0.02 ms, recv 0.01 ms, ..." for a bar's accessible name. */
export function describeTiming(
  request: IRecentRequest,
  locale?: string
): string {
  const parts = request.phases.map(
    p => `${p.name} ${formatMs(p.duration_ms, locale)}`
  );
  for (const call of request.calls) {
    parts.push(`${call.op} ${formatMs(call.duration_ms, locale)}`);
  }
  return parts.join(', ');
}

function statusTone(status: number): string {
  return status >= 500 ? 'error' : status >= 400 ? 'warn' : 'ok';
}

/** The small stacked bar of a request's phases with its calls drawn inside. */
export function renderBar(
  request: IRecentRequest,
  label: string,
  scaleMs?: number
): HTMLElement {
  const bar = h('span', {
    class: 'eb-TimingBar',
    role: 'img',
    'aria-label': label
  });
  for (const piece of segments(request, scaleMs)) {
    const node = h('span', {
      class: piece.type === 'phase' ? 'eb-Phase' : 'eb-Call',
      'data-kind': piece.kind
    });
    node.style.left = `${piece.left.toFixed(2)}%`;
    node.style.width = `${piece.width.toFixed(2)}%`;
    bar.append(node);
  }
  return bar;
}

/** The waterfall of one request: a row per phase and call, bars at their offsets. */
export function renderWaterfall(
  request: IRecentRequest,
  trans: TranslationBundle,
  locale?: string
): HTMLElement {
  const total = requestTotal(request);
  const table = h(
    'table',
    { class: 'eb-Waterfall' },
    h(
      'caption',
      {},
      trans.__(
        '%1 %2: %3 in the gateway',
        request.method,
        request.target,
        formatMs(total, locale)
      )
    ),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { scope: 'col' }, trans.__('Step')),
        h('th', { scope: 'col' }, trans.__('Start')),
        h('th', { scope: 'col' }, trans.__('Duration')),
        h('th', { scope: 'col', class: 'eb-WaterfallTrack' }, trans.__('When'))
      )
    )
  );
  const body = h('tbody');
  for (const piece of segments(request, total)) {
    const size = piece.call ? callSize(piece.call, trans, locale) : '';
    const bar = h('span', {
      class: piece.type === 'phase' ? 'eb-Phase' : 'eb-Call',
      'data-kind': piece.kind
    });
    bar.style.left = `${piece.left.toFixed(2)}%`;
    bar.style.width = `${piece.width.toFixed(2)}%`;
    body.append(
      h(
        'tr',
        { 'data-type': piece.type, 'data-kind': piece.kind },
        h(
          'th',
          { scope: 'row', class: piece.type === 'call' ? 'eb-CallName' : '' },
          piece.label,
          ...(size ? [' ', h('span', { class: 'eb-CallSize' }, size)] : [])
        ),
        h('td', { class: 'eb-Num' }, formatMs(piece.offsetMs, locale)),
        h('td', { class: 'eb-Num' }, formatMs(piece.durationMs, locale)),
        h(
          'td',
          { class: 'eb-WaterfallTrack' },
          h('span', { class: 'eb-Track', 'aria-hidden': 'true' }, bar)
        )
      )
    );
  }
  if (request.write_ms !== null && request.write_ms !== undefined) {
    body.append(
      h(
        'tr',
        { 'data-type': 'write' },
        h('th', { scope: 'row' }, trans.__('write')),
        h('td', { class: 'eb-Num' }, formatMs(total, locale)),
        h('td', { class: 'eb-Num' }, formatMs(request.write_ms, locale)),
        h(
          'td',
          { class: 'eb-WaterfallTrack eb-FieldHint' },
          trans.__('after the reply')
        )
      )
    );
  }
  table.append(body);
  return table;
}

export interface IRecentRequestsViewOptions extends IFollowingViewOptions {
  locale?: string;
  /** Fetches the listing; `requestAPI` on the endpoint's `requests` route by default. */
  fetch?: (name: string) => Promise<IRecentRequests>;
}

const fetchRecent = (name: string) =>
  requestAPI<IRecentRequests>(endpointPath(name, 'requests'));

/** An endpoint's last requests with their phase bars; one picked shows its waterfall. */
export class RecentRequestsView extends FollowingView {
  private readonly _options: IRecentRequestsViewOptions;
  private readonly _list = h('ol', { class: 'eb-RequestList' });
  private readonly _detail = h('div', {
    class: 'eb-RequestDetail',
    'aria-live': 'polite'
  });
  private _requests: IRecentRequest[] = [];
  private _selected: string | null = null;
  private _lastKey = '';

  constructor(options: IRecentRequestsViewOptions) {
    super(`eb-requests-follow-${options.name}`, options);
    const { trans } = options;
    this.addClass('eb-RequestsView');
    this._options = options;
    const refresh = h(
      'button',
      { type: 'button', class: 'eb-Button' },
      trans.__('Refresh')
    );
    refresh.addEventListener('click', () => void this.load());
    this._list.setAttribute(
      'aria-label',
      trans.__('Recent requests to %1', options.name)
    );
    this.node.append(
      h(
        'div',
        { class: 'eb-LogBar' },
        h(
          'label',
          { for: this.follow.id },
          this.follow,
          ' ',
          trans.__('Follow')
        ),
        refresh,
        h(
          'span',
          { class: 'eb-Legend', 'aria-hidden': 'true' },
          ...['route', 'recv', 'queue', 'worker'].map(name =>
            h(
              'span',
              { class: 'eb-LegendItem' },
              h('span', { class: 'eb-Phase', 'data-kind': name }),
              name
            )
          ),
          h(
            'span',
            { class: 'eb-LegendItem' },
            h('span', { class: 'eb-Call', 'data-kind': 'service' }),
            trans.__('service call')
          )
        ),
        this.status
      ),
      h('div', { class: 'eb-RequestsBody' }, this._list, this._detail)
    );
  }

  /** The requests last shown, newest first. */
  get requests(): readonly IRecentRequest[] {
    return this._requests;
  }

  /** Shows the waterfall of the request with this id (or of none). */
  select(requestId: string | null): void {
    this._selected = requestId;
    const { trans, locale } = this._options;
    const request = this._requests.find(r => r.request_id === requestId);
    for (const button of this._list.querySelectorAll<HTMLButtonElement>(
      'button.eb-RequestItem'
    )) {
      button.setAttribute(
        'aria-pressed',
        String(button.dataset.requestId === requestId)
      );
    }
    if (!request) {
      this._detail.replaceChildren(
        h(
          'p',
          { class: 'eb-FieldHint' },
          this._requests.length
            ? trans.__('Pick a request to see where its time went.')
            : ''
        )
      );
      return;
    }
    this._detail.replaceChildren(
      h(
        'h3',
        { class: 'eb-DetailTitle' },
        trans.__('Request %1', request.request_id)
      ),
      renderWaterfall(request, trans, locale)
    );
  }

  private _render(): void {
    const { trans, locale } = this._options;
    const scale = Math.max(0, ...this._requests.map(requestTotal));
    const items = this._requests.map(request => {
      const total = requestTotal(request);
      const when = new Date(request.time * 1000).toLocaleTimeString(locale);
      const timing = describeTiming(request, locale);
      const bar = renderBar(
        request,
        timing || trans.__('no phases recorded'),
        scale || undefined
      );
      bar.id = `eb-bar-${this.id || this.endpoint}-${request.request_id}`;
      const button = h(
        'button',
        {
          type: 'button',
          class: 'eb-RequestItem',
          'data-request-id': request.request_id,
          'aria-pressed': String(request.request_id === this._selected),
          'aria-describedby': bar.id,
          'aria-label': trans.__(
            '%1 %2, status %3, %4 at %5',
            request.method,
            request.target,
            String(request.status),
            formatMs(total, locale),
            when
          )
        },
        h(
          'span',
          { class: 'eb-Method', 'data-method': request.method },
          request.method
        ),
        h('span', { class: 'eb-Path' }, request.target),
        h(
          'span',
          { class: 'eb-Status', 'data-tone': statusTone(request.status) },
          String(request.status)
        ),
        h('span', { class: 'eb-Latency' }, formatMs(total, locale)),
        bar
      );
      button.addEventListener('click', () => this.select(request.request_id));
      return h('li', {}, button);
    });
    if (!items.length) {
      items.push(
        h(
          'li',
          { class: 'eb-FieldHint' },
          trans.__('No requests yet: send one and it shows here.')
        )
      );
    }
    this._list.replaceChildren(...items);
    if (
      this._selected &&
      !this._requests.some(r => r.request_id === this._selected)
    ) {
      this._selected = null;
    }
    this.select(this._selected);
  }

  protected stopped(): boolean {
    return this.gone;
  }

  /** Fetches the listing and shows it. */
  protected async fetchAndShow(): Promise<void> {
    const data = await (this._options.fetch ?? fetchRecent)(this.endpoint);
    const requests = data?.requests ?? [];
    const key = requests.map(r => r.request_id).join(',');
    if (key !== this._lastKey || !this._list.childElementCount) {
      this._lastKey = key;
      this._requests = requests;
      this._render();
    }
  }

  protected failedRead(message: string): string {
    return this._options.trans.__('Cannot read the requests: %1', message);
  }
}
