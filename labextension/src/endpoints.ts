/**
 * The live endpoint list: one row per endpoint, patched in place as listings arrive.
 */
import { Clipboard, Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import {
  copyIcon,
  deleteIcon,
  fileIcon,
  linkIcon,
  listIcon,
  refreshIcon,
  runIcon,
  stopIcon,
  terminalIcon
} from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { h, iconButton, setAttr, setText } from './dom';
import { APIError, endpointPath, followEvents, requestAPI } from './handler';
import {
  curlCommand,
  diffEndpoints,
  endpointUrl,
  FIRST_ENDPOINT_SNIPPET,
  formatCount,
  formatMs,
  formatPercent,
  IEndpointView,
  stateLabel,
  stateTone,
  toView
} from './model';
import {
  IEndpoint,
  IEndpointList,
  IGatewayEvent,
  IMetricsResponse,
  IMetricsSnapshot
} from './tokens';

/** What the list asks its host to do (open views, jump to cells, fill the builder). */
export interface IEndpointActions {
  openLogs(view: IEndpointView): void;
  openSource(view: IEndpointView): void;
  jumpToOrigin(view: IEndpointView): void;
  tryRequest(view: IEndpointView): void;
  /**
   * An endpoint is being deleted (`pending`), was deleted (`gone`), or its deletion failed
   * (`kept`); views of it stop or resume asking the server about it.
   */
  deleting(name: string, phase: 'pending' | 'gone' | 'kept'): Promise<void> | void;
}

export interface IEndpointListOptions {
  actions: IEndpointActions;
  /** Milliseconds between listings while the panel is visible. */
  pollInterval?: number;
}

const STATE_BUSY = new Set(['building', 'starting']);

/** One endpoint's row; `update` touches only what changed. */
class EndpointRow {
  readonly node: HTMLLIElement;
  private _view: IEndpointView;
  private readonly _method = h('span', { class: 'eb-Method' });
  private readonly _path = h('span', { class: 'eb-Path' });
  private readonly _state = h('span', { class: 'eb-State', role: 'status' });
  private readonly _name = h('span', { class: 'eb-Name' });
  private readonly _revision = h('span', { class: 'eb-Stat', 'data-stat': 'revision' });
  private readonly _workers = h('span', { class: 'eb-Stat', 'data-stat': 'workers' });
  private readonly _requests = h('span', { class: 'eb-Stat', 'data-stat': 'requests' });
  private readonly _errorRate = h('span', { class: 'eb-Stat', 'data-stat': 'error-rate' });
  private readonly _p50 = h('span', { class: 'eb-Stat', 'data-stat': 'p50' });
  private readonly _p99 = h('span', { class: 'eb-Stat', 'data-stat': 'p99' });
  private readonly _reason = h('div', { class: 'eb-Reason' });
  private readonly _lastError = h('div', { class: 'eb-LastError' });
  private readonly _progress = h('div', { class: 'eb-Progress', 'aria-live': 'polite' });
  private readonly _origin: HTMLButtonElement;
  private readonly _start: HTMLButtonElement;
  private readonly _stop: HTMLButtonElement;

  constructor(view: IEndpointView, _list: EndpointList) {
    this._view = view;
    const act = (fn: (v: IEndpointView) => void) => () => fn(this._view);
    const actions = _list.actions;
    this._start = iconButton(runIcon, `Start ${view.name}`, act(v => _list.run(v, 'start')));
    this._stop = iconButton(stopIcon, `Stop ${view.name}`, act(v => _list.run(v, 'stop')));
    this._origin = h(
      'button',
      { type: 'button', class: 'eb-Origin eb-LinkButton' },
      ''
    );
    this._origin.addEventListener('click', act(v => actions.jumpToOrigin(v)));
    const toolbar = h(
      'div',
      { class: 'eb-Actions', role: 'toolbar', 'aria-label': `Actions for ${view.name}` },
      this._start,
      this._stop,
      iconButton(refreshIcon, `Restart ${view.name}`, act(v => _list.run(v, 'restart'))),
      iconButton(listIcon, `Logs of ${view.name}`, act(v => actions.openLogs(v))),
      iconButton(fileIcon, `Source of ${view.name}`, act(v => actions.openSource(v))),
      iconButton(terminalIcon, `Try ${view.name} in the request builder`, act(v => actions.tryRequest(v))),
      iconButton(linkIcon, `Copy URL of ${view.name}`, act(v => copy(endpointUrl(v), 'URL'))),
      iconButton(copyIcon, `Copy ${view.name} as curl`, act(v => copy(curlFor(v), 'curl command'))),
      iconButton(deleteIcon, `Delete ${view.name}`, act(v => void _list.remove(v)), 'eb-Danger')
    );
    this.node = h(
      'li',
      { class: 'eb-Endpoint', 'data-name': view.name },
      h('div', { class: 'eb-EndpointHead' }, this._method, this._path, this._state),
      h(
        'div',
        { class: 'eb-Stats' },
        this._name,
        this._revision,
        this._workers,
        this._requests,
        this._errorRate,
        this._p50,
        this._p99
      ),
      this._progress,
      this._reason,
      this._lastError,
      this._origin,
      toolbar
    );
    this.render(view);
  }

  get view(): IEndpointView {
    return this._view;
  }

  /** Shows `view`, touching only nodes whose text or attributes change. */
  render(view: IEndpointView): void {
    this._view = view;
    const tone = stateTone(view.state);
    setText(this._method, view.method);
    setAttr(this._method, 'data-method', view.method);
    setText(this._path, view.domain ? `${view.domain}${view.path}` : view.path);
    setText(this._state, stateLabel(view.state));
    setAttr(this._state, 'data-state', view.state);
    setAttr(this._state, 'data-tone', tone);
    setAttr(this.node, 'data-state', view.state);
    setText(this._name, view.name);
    setText(this._revision, view.revision === null ? 'rev \u2013' : `rev ${view.revision}`);
    setAttr(this._revision, 'title', 'Live revision');
    setText(
      this._workers,
      view.workers === null ? '\u2013 workers' : `${view.workers} worker${view.workers === 1 ? '' : 's'}`
    );
    setText(this._requests, `${formatCount(view.requests)} req`);
    setAttr(this._requests, 'title', `${view.requests} requests, ${view.errors} errors`);
    setText(this._errorRate, `${formatPercent(view.errorRate)} err`);
    setAttr(this._errorRate, 'data-bad', view.errorRate ? 'true' : null);
    setAttr(this._errorRate, 'title', 'Error rate');
    setText(this._p50, `p50 ${formatMs(view.p50)}`);
    setText(this._p99, `p99 ${formatMs(view.p99)}`);
    const showReason = !!view.reason && tone !== 'ok';
    setText(this._reason, showReason ? view.reason ?? '' : '');
    this._reason.hidden = !showReason;
    setAttr(this._reason, 'data-tone', tone);
    setText(this._lastError, view.lastError ? `Last error: ${view.lastError}` : '');
    this._lastError.hidden = !view.lastError;
    if (!STATE_BUSY.has(view.state)) {
      this.progress('');
    }
    const notebook = view.origin?.notebook;
    setText(this._origin, notebook ? `From ${basename(notebook)}` : '');
    setAttr(this._origin, 'aria-label', notebook ? `Go to the cell of ${view.name} in ${notebook}` : null);
    setAttr(this._origin, 'title', notebook ? `${notebook}${view.origin?.cell_id ? ` (cell ${view.origin.cell_id})` : ''}` : null);
    this._origin.hidden = !notebook;
    this._start.disabled = view.state === 'running' || STATE_BUSY.has(view.state);
    this._stop.disabled = view.state === 'stopped' || view.state === 'created';
  }

  /** Shows a build progress line (empty hides it). */
  progress(text: string): void {
    setText(this._progress, text);
    this._progress.hidden = !text;
  }
}

/**
 * Fills in `metrics` from `/metrics` when the listing does not carry it (the gateway's own
 * admin API lists endpoints without metrics; the server extension includes them).
 */
async function addMetrics(endpoint: IEndpoint): Promise<void> {
  if (endpoint.metrics !== undefined) {
    return;
  }
  if (!endpoint.runtime && endpoint.state !== 'running') {
    endpoint.metrics = null;
    return;
  }
  try {
    const data = await requestAPI<IMetricsSnapshot | IMetricsResponse>(
      endpointPath(endpoint.name, 'metrics')
    );
    endpoint.metrics = 'latency_ms' in data ? data : data.metrics;
  } catch {
    endpoint.metrics = null;
  }
}

function basename(path: string): string {
  return path.split('/').pop() || path;
}

function curlFor(view: IEndpointView): string {
  return curlCommand({ method: view.method, url: endpointUrl(view) });
}

function copy(text: string, what: string): void {
  Clipboard.copyToSystem(text);
  Notification.success(`Copied the ${what}`, { autoClose: 2000 });
}

/** The endpoints of the gateway, kept current by polling plus the event stream. */
export class EndpointList extends Widget {
  readonly actions: IEndpointActions;
  private readonly _rows = new Map<string, EndpointRow>();
  private readonly _views = new Map<string, IEndpointView>();
  private readonly _list = h('ul', { class: 'eb-EndpointList', 'aria-label': 'Endpoints' });
  private readonly _empty: HTMLElement;
  private readonly _banner = h('div', { class: 'eb-Banner', role: 'alert' });
  private readonly _status = h('span', { class: 'eb-Connection', role: 'status' });
  private readonly _pollInterval: number;
  private _timer: number | null = null;
  private _failures = 0;
  private _inflight: Promise<void> | null = null;
  private _events: AbortController | null = null;
  private _loaded = false;
  private _live = false;

  constructor(options: IEndpointListOptions) {
    super();
    this.addClass('eb-Endpoints');
    this.actions = options.actions;
    this._pollInterval = options.pollInterval ?? 2000;
    const snippet = h('pre', { class: 'eb-Snippet', tabindex: '0' }, FIRST_ENDPOINT_SNIPPET);
    const copySnippet = iconButton(copyIcon, 'Copy the example cell', () =>
      copy(FIRST_ENDPOINT_SNIPPET, 'example cell')
    );
    this._empty = h(
      'div',
      { class: 'eb-Empty' },
      h('p', { class: 'eb-EmptyTitle' }, 'No endpoints yet'),
      h(
        'p',
        {},
        'In a Python notebook, run ',
        h('code', {}, '%load_ext edgebook'),
        ', then a cell like this one: its Rust body compiles into a live HTTP endpoint ' +
          'that appears here as soon as it builds.'
      ),
      h('div', { class: 'eb-SnippetBox' }, snippet, copySnippet)
    );
    this._empty.hidden = true;
    const refresh = iconButton(refreshIcon, 'Refresh endpoints', () => void this.refresh());
    this.node.append(
      h('div', { class: 'eb-SectionHead' }, h('h3', {}, 'Endpoints'), this._status, refresh),
      this._banner,
      this._empty,
      this._list
    );
    this._banner.hidden = true;
    setText(this._status, 'connecting\u2026');
  }

  /** The views on screen, by name. */
  get views(): ReadonlyMap<string, IEndpointView> {
    return this._views;
  }

  /** Fetches the listing now and patches the rows (concurrent calls share one request). */
  refresh(): Promise<void> {
    if (!this._inflight) {
      this._inflight = this._refresh().finally(() => {
        this._inflight = null;
      });
    }
    return this._inflight;
  }

  private async _refresh(): Promise<void> {
    try {
      const data = await requestAPI<IEndpointList>('endpoints');
      const endpoints = data?.endpoints ?? [];
      await Promise.all(endpoints.map(addMetrics));
      this._failures = 0;
      this._banner.hidden = true;
      this.apply(endpoints.map(toView));
      setText(this._status, this._live ? 'live' : 'polling');
    } catch (error) {
      this._failures += 1;
      const message = error instanceof APIError && error.status === 404
        ? 'The edgebook server extension is not enabled in this Jupyter server.'
        : `Cannot list endpoints: ${(error as Error).message}`;
      setText(this._banner, message);
      this._banner.hidden = false;
      setText(this._status, 'offline');
    }
  }

  /** Patches the list to show `views`: adds, removes, updates and reorders rows. */
  apply(views: IEndpointView[]): void {
    const diff = diffEndpoints(this._views, views);
    const byName = new Map(views.map(v => [v.name, v]));
    for (const name of diff.removed) {
      void this.actions.deleting(name, 'gone');
      this._rows.get(name)?.node.remove();
      this._rows.delete(name);
      this._views.delete(name);
    }
    for (const name of [...diff.added, ...diff.changed]) {
      const view = byName.get(name)!;
      const row = this._rows.get(name);
      if (row) {
        row.render(view);
      } else {
        this._rows.set(name, new EndpointRow(view, this));
      }
      this._views.set(name, view);
    }
    // Reorder only where the order on screen differs (moving a node restarts nothing else).
    let previous: Element | null = null;
    for (const name of diff.order) {
      const node = this._rows.get(name)!.node;
      const expected: Element | null = previous ? previous.nextElementSibling : this._list.firstElementChild;
      if (expected !== node) {
        this._list.insertBefore(node, expected);
      }
      previous = node;
    }
    this._loaded = true;
    this._empty.hidden = diff.order.length > 0;
    this._list.hidden = diff.order.length === 0;
  }

  /** Starts, stops or restarts an endpoint, then refreshes. */
  async run(view: IEndpointView, action: 'start' | 'stop' | 'restart'): Promise<void> {
    try {
      await requestAPI<unknown>(endpointPath(view.name, action), { method: 'POST' });
    } catch (error) {
      Notification.error(`Could not ${action} ${view.name}: ${(error as Error).message}`);
    }
    await this.refresh();
  }

  /** Deletes an endpoint after the user confirms. */
  async remove(view: IEndpointView): Promise<void> {
    const result = await showDialog({
      title: `Delete ${view.name}?`,
      body: `${view.method} ${view.path} stops serving and its revisions are removed. The notebook cell is kept.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!result.button.accept) {
      return;
    }
    await this.actions.deleting(view.name, 'pending');
    try {
      await requestAPI<unknown>(endpointPath(view.name), { method: 'DELETE' });
      await this.actions.deleting(view.name, 'gone');
    } catch (error) {
      await this.actions.deleting(view.name, 'kept');
      Notification.error(`Could not delete ${view.name}: ${(error as Error).message}`);
    }
    await this.refresh();
  }

  /** Reacts to one gateway event: progress lines now, a fresh listing soon. */
  handleEvent(event: IGatewayEvent): void {
    const row = event.endpoint ? this._rows.get(event.endpoint) : undefined;
    if (event.type === 'build' && row) {
      const text =
        event.phase === 'finished'
          ? ''
          : event.phase === 'progress'
            ? String(event.message ?? event.crate ?? 'building\u2026')
            : `build ${event.phase}`;
      row.progress(text);
      if (event.phase !== 'progress') {
        this._soon();
      }
      return;
    }
    if (event.type !== 'worker') {
      this._soon();
    }
  }

  private _soonTimer: number | null = null;

  private _soon(): void {
    if (this._soonTimer === null) {
      this._soonTimer = window.setTimeout(() => {
        this._soonTimer = null;
        if (this.isVisible) {
          void this.refresh();
        }
      }, 100);
    }
  }

  private _schedule(): void {
    this._stopTimer();
    const delay = Math.min(30000, this._pollInterval * 2 ** Math.min(this._failures, 4));
    this._timer = window.setTimeout(async () => {
      this._timer = null;
      if (this.isVisible) {
        await this.refresh();
      }
      if (this.isAttached) {
        this._schedule();
      }
    }, delay);
  }

  private _stopTimer(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private async _follow(): Promise<void> {
    const controller = new AbortController();
    this._events = controller;
    let delay = 1000;
    while (!controller.signal.aborted) {
      try {
        await followEvents(
          event => this.handleEvent(event),
          controller.signal,
          () => {
            this._live = true;
            delay = 1000;
            setText(this._status, 'live');
          }
        );
      } catch {
        delay = Math.min(delay * 2, 30000);
      }
      this._live = false;
      if (controller.signal.aborted) {
        break;
      }
      setText(this._status, this._failures ? 'offline' : 'polling');
      await new Promise(resolve => window.setTimeout(resolve, delay));
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    void this.refresh();
    this._schedule();
    void this._follow();
  }

  protected onBeforeDetach(msg: Message): void {
    this._stopTimer();
    this._events?.abort();
    this._events = null;
    super.onBeforeDetach(msg);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (this._loaded) {
      void this.refresh();
    }
  }

  dispose(): void {
    this._stopTimer();
    this._events?.abort();
    super.dispose();
  }
}
