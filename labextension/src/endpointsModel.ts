/**
 * The endpoints model: fetches listings, follows the gateway's events on Jupyter Server's
 * event bus, and tells views what changed through signals.
 */
import { Debouncer, Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { APIError, endpointPath, requestAPI } from './handler';
import { diffEndpoints, IEndpointDiff, IEndpointView, toView } from './model';
import {
  ConnectionStatus,
  DEFAULT_SETTINGS,
  EndpointAction,
  GATEWAY_EVENT_SCHEMA,
  IBuildProgress,
  IDeletion,
  IEndpoint,
  IEndpointList,
  IEndpointsModel,
  IGatewayEvent,
  IMetricsResponse,
  IMetricsSnapshot
} from './tokens';

/** What the model asks of the server; `EndpointsClient` is the real one. */
export interface IEndpointsClient {
  list(): Promise<IEndpoint[]>;
  act(name: string, action: EndpointAction): Promise<void>;
  remove(name: string): Promise<void>;
}

/** One message of `serviceManager.events.stream`: the schema id plus the event's fields. */
export interface IBusEmission {
  schema_id: string;
  [key: string]: unknown;
}

/** The part of Jupyter's `Event.IManager` the model reads. */
export interface IEventSource {
  readonly stream: ISignal<unknown, IBusEmission>;
}

export interface IEndpointsModelOptions {
  client?: IEndpointsClient;
  /** Jupyter Server's event bus; null when there is none (the model only polls). */
  events?: IEventSource | null;
  pollInterval?: number;
  /** Milliseconds without any gateway event after which polling takes over again. */
  eventsTimeout?: number;
  /** Wording of the banner for an unreachable server extension. */
  describeError?: (error: unknown) => string;
}

/** The server extension's routes, through `requestAPI`. */
export class EndpointsClient implements IEndpointsClient {
  async list(): Promise<IEndpoint[]> {
    const data = await requestAPI<IEndpointList>('endpoints');
    const endpoints = data?.endpoints ?? [];
    await Promise.all(endpoints.map(addMetrics));
    return endpoints;
  }

  async act(name: string, action: EndpointAction): Promise<void> {
    await requestAPI<unknown>(endpointPath(name, action), { method: 'POST' });
  }

  async remove(name: string): Promise<void> {
    await requestAPI<unknown>(endpointPath(name), { method: 'DELETE' });
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

function defaultDescribeError(error: unknown): string {
  return error instanceof APIError && error.status === 404
    ? 'The edgebook server extension is not enabled in this Jupyter server.'
    : `Cannot list endpoints: ${(error as Error).message}`;
}

/**
 * Invariants: at most one listing request is in flight; a `refresh()` that arrives while
 * one is in flight marks the model dirty, and exactly one more listing follows, so whoever
 * asked sees state fetched after they asked. The poll runs only while no events flow and
 * someone is looking; every timer belongs to the poll, the debouncer or `_staleTimer`, and
 * `dispose()` ends all three.
 */
export class EndpointsModel implements IEndpointsModel {
  private readonly _client: IEndpointsClient;
  private readonly _events: IEventSource | null;
  private readonly _describeError: (error: unknown) => string;
  private readonly _views = new Map<string, IEndpointView>();
  private readonly _poll: Poll;
  private readonly _soon: Debouncer<void>;
  private readonly _changed = new Signal<IEndpointsModel, IEndpointDiff>(this);
  private readonly _removed = new Signal<IEndpointsModel, string>(this);
  private readonly _deleting = new Signal<IEndpointsModel, IDeletion>(this);
  private readonly _buildProgress = new Signal<IEndpointsModel, IBuildProgress>(
    this
  );
  private readonly _statusChanged = new Signal<
    IEndpointsModel,
    ConnectionStatus
  >(this);
  private _status: ConnectionStatus = 'connecting';
  private _error: string | null = null;
  private _loaded = false;
  private _active = true;
  private _live = false;
  private _lastSeq: number | null = null;
  private _eventsTimeout: number;
  private _staleTimer: ReturnType<typeof setTimeout> | null = null;
  private _inflight: Promise<void> | null = null;
  private _dirty = false;
  private _isDisposed = false;

  constructor(options: IEndpointsModelOptions = {}) {
    this._client = options.client ?? new EndpointsClient();
    this._events = options.events ?? null;
    this._describeError = options.describeError ?? defaultDescribeError;
    this._eventsTimeout =
      options.eventsTimeout ?? DEFAULT_SETTINGS.eventsTimeout;
    this._soon = new Debouncer(() => this.refresh(), 100);
    this._poll = new Poll({
      auto: false,
      factory: () => this._pollOnce(),
      frequency: {
        interval: options.pollInterval ?? DEFAULT_SETTINGS.pollInterval,
        backoff: true,
        max: 30000
      },
      name: '@edgebook/labextension:endpoints',
      standby: () => this._live || !this._active || 'when-hidden'
    });
    this._events?.stream.connect(this._onEmission, this);
    void this._poll.start();
  }

  get views(): ReadonlyMap<string, IEndpointView> {
    return this._views;
  }

  get status(): ConnectionStatus {
    return this._status;
  }

  get error(): string | null {
    return this._error;
  }

  get loaded(): boolean {
    return this._loaded;
  }

  /** Whether events are flowing (and polling is paused). */
  get live(): boolean {
    return this._live;
  }

  get pollInterval(): number {
    return this._poll.frequency.interval;
  }

  set pollInterval(interval: number) {
    if (interval !== this._poll.frequency.interval) {
      this._poll.frequency = { ...this._poll.frequency, interval };
    }
  }

  get eventsTimeout(): number {
    return this._eventsTimeout;
  }

  set eventsTimeout(ms: number) {
    this._eventsTimeout = ms;
  }

  get active(): boolean {
    return this._active;
  }

  set active(active: boolean) {
    if (active === this._active) {
      return;
    }
    this._active = active;
    if (active && !this._live && !this._isDisposed) {
      void this._poll.refresh();
    }
  }

  get changed(): ISignal<IEndpointsModel, IEndpointDiff> {
    return this._changed;
  }

  get removed(): ISignal<IEndpointsModel, string> {
    return this._removed;
  }

  get deleting(): ISignal<IEndpointsModel, IDeletion> {
    return this._deleting;
  }

  get buildProgress(): ISignal<IEndpointsModel, IBuildProgress> {
    return this._buildProgress;
  }

  get statusChanged(): ISignal<IEndpointsModel, ConnectionStatus> {
    return this._statusChanged;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  refresh(): Promise<void> {
    if (this._inflight) {
      this._dirty = true;
      return this._inflight;
    }
    this._inflight = this._refreshUntilClean().finally(() => {
      this._inflight = null;
    });
    return this._inflight;
  }

  async run(name: string, action: EndpointAction): Promise<void> {
    try {
      await this._client.act(name, action);
    } finally {
      await this.refresh();
    }
  }

  async remove(name: string): Promise<void> {
    this._deleting.emit({ endpoint: name, phase: 'pending' });
    try {
      await this._client.remove(name);
    } catch (error) {
      this._deleting.emit({ endpoint: name, phase: 'kept' });
      await this.refresh();
      throw error;
    }
    this._deleting.emit({ endpoint: name, phase: 'gone' });
    await this.refresh();
  }

  /** Applies a listing: emits `removed` per gone endpoint, then `changed` once. */
  apply(views: IEndpointView[]): void {
    const diff = diffEndpoints(this._views, views);
    for (const name of diff.removed) {
      this._views.delete(name);
    }
    for (const view of views) {
      this._views.set(view.name, view);
    }
    const first = !this._loaded;
    this._loaded = true;
    for (const name of diff.removed) {
      this._removed.emit(name);
    }
    const orderChanged =
      diff.order.length !== this._order.length ||
      diff.order.some((name, i) => name !== this._order[i]);
    this._order = diff.order;
    if (first || orderChanged || diff.added.length || diff.changed.length) {
      this._changed.emit(diff);
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._events?.stream.disconnect(this._onEmission, this);
    this._poll.dispose();
    this._soon.dispose();
    this._clearStaleTimer();
    Signal.clearData(this);
  }

  private _order: string[] = [];

  private async _refreshUntilClean(): Promise<void> {
    do {
      this._dirty = false;
      await this._fetchOnce();
    } while (this._dirty && !this._isDisposed);
  }

  private async _fetchOnce(): Promise<void> {
    try {
      const endpoints = await this._client.list();
      if (this._isDisposed) {
        return;
      }
      this._error = null;
      this.apply(endpoints.map(toView));
      this._setStatus(this._live ? 'live' : 'polling');
    } catch (error) {
      if (this._isDisposed) {
        return;
      }
      this._error = this._describeError(error);
      this._setStatus('offline');
    }
  }

  /** The poll's factory: a rejection makes the poll back off. */
  private async _pollOnce(): Promise<void> {
    await this.refresh();
    if (this._error) {
      throw new Error(this._error);
    }
  }

  private _setStatus(status: ConnectionStatus): void {
    if (status !== this._status) {
      this._status = status;
      this._statusChanged.emit(status);
    } else if (status === 'offline') {
      // The error text may have changed; views reread it.
      this._statusChanged.emit(status);
    }
  }

  private _onEmission(_: unknown, emission: IBusEmission): void {
    if (emission.schema_id !== GATEWAY_EVENT_SCHEMA || this._isDisposed) {
      return;
    }
    const event = emission as unknown as IGatewayEvent;
    if (event.type === 'disconnected') {
      this._goStale();
      return;
    }
    this._armStaleTimer();
    const wasLive = this._live;
    if (!wasLive) {
      this._live = true;
      if (this._status === 'polling') {
        this._setStatus('live');
      }
    }
    // Resync whenever events may have been missed: the stream (re)connected, the relay
    // (re)connected to the gateway, or a sequence number was skipped. A heartbeat carries
    // the last number the relay saw, so a change missed while the websocket reconnected
    // shows within one heartbeat even when no other event follows.
    const seq = typeof event.seq === 'number' ? event.seq : null;
    const last = this._lastSeq;
    const heartbeat = event.type === 'heartbeat';
    const gap =
      seq !== null && last !== null && seq > last + (heartbeat ? 0 : 1);
    if (seq !== null) {
      // A hello may count from zero again (a restarted gateway); replayed events do not.
      this._lastSeq =
        event.type === 'hello' || last === null ? seq : Math.max(last, seq);
    }
    if (!wasLive || event.type === 'hello' || gap) {
      void this.refresh();
      return;
    }
    this._handleEvent(event);
  }

  private _handleEvent(event: IGatewayEvent): void {
    if (event.type === 'heartbeat' || event.type === 'worker') {
      return;
    }
    if (event.type === 'build' && event.endpoint) {
      const phase = String(event.phase ?? '');
      this._buildProgress.emit({
        endpoint: event.endpoint,
        phase,
        message: String(event.message ?? event.crate ?? '')
      });
      if (phase === 'progress') {
        return;
      }
    }
    void this._soon.invoke();
  }

  private _armStaleTimer(): void {
    this._clearStaleTimer();
    this._staleTimer = setTimeout(() => this._goStale(), this._eventsTimeout);
  }

  private _clearStaleTimer(): void {
    if (this._staleTimer !== null) {
      clearTimeout(this._staleTimer);
      this._staleTimer = null;
    }
  }

  /** No events for a while (or the relay lost the gateway): poll again, starting now. */
  private _goStale(): void {
    this._clearStaleTimer();
    if (!this._live) {
      return;
    }
    this._live = false;
    if (this._status === 'live') {
      this._setStatus('polling');
    }
    void this._poll.refresh();
  }
}
