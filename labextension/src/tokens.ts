/**
 * The JSON the edgebook server extension sends, field for field.
 *
 * Routes live under `/edgebook/api/` (Jupyter auth) and mirror the gateway's admin API:
 * `GET endpoints`, `GET|PUT|DELETE endpoints/{name}`, `POST endpoints/{name}/start|stop|restart`,
 * `GET endpoints/{name}/logs?tail=N`, `.../metrics`, `.../source`, `.../requests`. The server extension
 * relays the gateway's events on Jupyter Server's event bus under `GATEWAY_EVENT_SCHEMA`.
 * The data plane is proxied at `/edgebook/proxy/<path>`.
 *
 * Types, constants and the `IEndpointsModel` token; nothing else runs on import.
 */
import { Token } from '@lumino/coreutils';
import type { IDisposable } from '@lumino/disposable';
import type { ISignal } from '@lumino/signaling';

import type { IEndpointDiff, IEndpointView } from './model';

/** States a user can see for an endpoint (the registry's `STATES`). */
export type EndpointState =
  | 'created'
  | 'building'
  | 'build_failed'
  | 'starting'
  | 'running'
  | 'running_build_failed'
  | 'running_deploy_failed'
  | 'stopped'
  | 'crash_looping'
  | 'deploy_failed';

export const ENDPOINT_STATES: readonly EndpointState[] = [
  'created',
  'building',
  'build_failed',
  'starting',
  'running',
  'running_build_failed',
  'running_deploy_failed',
  'stopped',
  'crash_looping',
  'deploy_failed'
];

/** Where an endpoint came from: the notebook and cell of its `%%rust_handler`. */
export interface IOrigin {
  notebook?: string | null;
  cell_id?: string | null;
  [key: string]: unknown;
}

/** Summary metrics in an endpoint listing. */
export interface IEndpointMetrics {
  requests: number;
  /** Error responses (a count), or counts by error type as `/metrics` reports them. */
  errors: number | Record<string, number>;
  /** Milliseconds over the recent window; null before the first request. */
  p50: number | null;
  p99: number | null;
}

/** The gateway's `EndpointMetrics.snapshot` plus the supervisor's fields. */
export interface IMetricsSnapshot {
  name?: string;
  state?: string;
  revision?: number | string | null;
  inflight?: number;
  queue_depth?: number;
  requests: number;
  responses: Record<string, number>;
  errors: Record<string, number>;
  latency_ms: {
    window: number;
    p50: number | null;
    p90: number | null;
    p99: number | null;
  };
}

/** `GET /edgebook/api/endpoints/{name}/metrics`: the snapshot under `metrics`. */
export interface IMetricsResponse {
  name: string;
  metrics: IMetricsSnapshot;
}

/** The last build, as the gateway's endpoint view reports it. */
export interface ILastBuild {
  ok?: boolean;
  status?: string;
  cached?: boolean;
  duration?: number;
  profile?: string;
  content_hash?: string;
}

/** One worker of the live revision (`runtime.workers`). */
export interface IWorker {
  pid: number;
  state: string;
  inflight: number;
  served: number;
  revision: number | string | null;
}

/** What the supervisor knows about a deployed endpoint (the gateway's `runtime`). */
export interface IRuntime {
  name: string;
  state: string;
  reason: string | null;
  /** A number; some gateway versions send it as a string. */
  revision: number | string | null;
  route: { method: string; path: string; domain: string | null };
  workers: IWorker[];
  workers_wanted: number;
  spawned: number;
  deploy_error: string | null;
  stderr_tail: string[];
}

/**
 * One endpoint as `GET /edgebook/api/endpoints` lists it.
 *
 * The server extension adds the summary fields (`revision`, `workers`, `metrics`,
 * `last_error`); the gateway's own admin API sends the record fields plus `runtime` and
 * `last_build`. Both are read, so the panel works against either.
 */
export interface IEndpoint {
  name: string;
  method: string;
  path: string;
  domain: string | null;
  state: EndpointState | string;
  reason: string | null;
  revision?: number | null;
  workers?: number | null;
  options: Record<string, unknown>;
  origin: IOrigin | null;
  metrics?: IEndpointMetrics | IMetricsSnapshot | null;
  last_error?: string | null;
  /** Fields the gateway's own view adds; optional so either side may omit them. */
  url?: string;
  desired?: 'running' | 'stopped' | string;
  live_revision?: number | null;
  stderr_tail?: string | null;
  services?: string[];
  last_build?: ILastBuild | null;
  runtime?: IRuntime | null;
  deps?: string[];
  created?: number;
  updated?: number;
}

/** `GET /edgebook/api/endpoints` */
export interface IEndpointList {
  endpoints: IEndpoint[];
}

/** One log line: `source` is `stderr` (the handler's) or `gateway` (notes about workers). */
export interface ILogLine {
  text: string;
  seq?: number;
  time?: number;
  source?: string;
}

/** `GET /edgebook/api/endpoints/{name}/logs?tail=N` */
export interface ILogs {
  lines: (ILogLine | string)[];
}

/** `GET /edgebook/api/endpoints/{name}/source` */
export interface ISource {
  source: string;
}

/** The one error shape every part of edgebook answers with. */
export interface IErrorBody {
  error: string;
  error_type: string;
  request_id?: string;
  [key: string]: unknown;
}

/**
 * One gateway event as the server extension relays it on the event bus, plus the relay's
 * own: `hello` (connected to the gateway: resync), `heartbeat` (the relay is alive) and
 * `disconnected` (it lost the gateway).
 */
export interface IGatewayEvent {
  type:
    | 'state'
    | 'build'
    | 'endpoint_created'
    | 'endpoint_removed'
    | 'worker'
    | string;
  seq: number;
  time: number;
  endpoint?: string;
  state?: string;
  reason?: string | null;
  revision?: number | null;
  phase?: 'started' | 'progress' | 'finished' | 'release_queued' | string;
  ok?: boolean;
  message?: string;
  [key: string]: unknown;
}

/** A response from the data plane, as the request builder shows it. */
export interface IProxyResponse {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: string;
  latencyMs: number;
  /** Headers the user gave that the proxy did not forward (it says which). */
  dropped: string[];
}

/** Where the server extension's routes live, relative to Jupyter's base URL. */
export const API_NAMESPACE = 'edgebook/api';
export const PROXY_NAMESPACE = 'edgebook/proxy';
/** The gateway's headless admin page, served behind Jupyter's login (no admin token). */
export const ADMIN_PAGE = 'edgebook/admin/';

/** Plugin and widget ids. */
export const PANEL_ID = 'edgebook-sidebar';
export const PLUGIN_ID = '@edgebook/labextension:sidebar';
export const MODEL_PLUGIN_ID = '@edgebook/labextension:endpoints-model';
export const EDITOR_PLUGIN_ID =
  '@edgebook/labextension:rust-handler-highlighting';
export const DIAGNOSTICS_PLUGIN_ID = '@edgebook/labextension:cell-diagnostics';

/**
 * The MIME type of a failed build's diagnostics in a `%%rust_handler` cell's output
 * (`edgebook/notebook/cells.py`, `failure_card`): `ICellDiagnostics`.
 */
export const DIAGNOSTICS_MIME = 'application/vnd.edgebook.diagnostics+json';

/** One compiler message at the cell's own lines (1-based; columns count characters). */
export interface ICellDiagnostic {
  line: number;
  column: number;
  end_line: number;
  end_column: number;
  level: string;
  message: string;
  code?: string | null;
}

/** The payload under `DIAGNOSTICS_MIME`. */
export interface ICellDiagnostics {
  endpoint: string;
  state: EndpointState;
  diagnostics: ICellDiagnostic[];
}

/** The `$id` of the server extension's event schema (`edgebook/events/gateway.yaml`). */
export const GATEWAY_EVENT_SCHEMA = 'https://events.edgebook.dev/gateway/v1';

/** Every command the extension registers. */
export namespace CommandIDs {
  export const start = 'edgebook:start';
  export const stop = 'edgebook:stop';
  export const restart = 'edgebook:restart';
  export const remove = 'edgebook:delete';
  export const openLogs = 'edgebook:open-logs';
  export const openSource = 'edgebook:open-source';
  export const recentRequests = 'edgebook:recent-requests';
  export const copyUrl = 'edgebook:copy-url';
  export const copyCurl = 'edgebook:copy-curl';
  export const tryRequest = 'edgebook:try';
  export const refresh = 'edgebook:refresh';
  export const jumpToCell = 'edgebook:jump-to-cell';
  export const focusPanel = 'edgebook:focus-panel';
  export const openAdmin = 'edgebook:open-admin';
}

/** The commands that act on one endpoint, in the order rows and menus show them. */
export const ENDPOINT_COMMANDS: readonly string[] = [
  CommandIDs.start,
  CommandIDs.stop,
  CommandIDs.restart,
  CommandIDs.openLogs,
  CommandIDs.openSource,
  CommandIDs.recentRequests,
  CommandIDs.tryRequest,
  CommandIDs.copyUrl,
  CommandIDs.copyCurl,
  CommandIDs.remove
];

/** How the model learns of changes: `live` over the event bus, else `polling`. */
export type ConnectionStatus = 'connecting' | 'live' | 'polling' | 'offline';

export type EndpointAction = 'start' | 'stop' | 'restart';

/** Where one endpoint's build is: `progress` with the builder's line, else a phase. */
export interface IBuildProgress {
  endpoint: string;
  phase: 'started' | 'progress' | 'finished' | 'release_queued' | string;
  /** The builder's line (`Compiling serde`), for `progress`. */
  message: string;
}

/** A delete in progress: `pending` before the request, then `gone` or `kept`. */
export interface IDeletion {
  endpoint: string;
  phase: 'pending' | 'gone' | 'kept';
}

/** The gateway's endpoints, kept current; views subscribe to its signals. */
export interface IEndpointsModel extends IDisposable {
  /** The endpoints, by name, as last fetched. */
  readonly views: ReadonlyMap<string, IEndpointView>;
  readonly status: ConnectionStatus;
  /** Why the last listing failed, or null. */
  readonly error: string | null;
  /** Whether a listing has arrived yet. */
  readonly loaded: boolean;
  /** Milliseconds between listings while no events flow. */
  pollInterval: number;
  /** Milliseconds without any gateway event after which polling takes over again. */
  eventsTimeout: number;
  /** Whether anyone is looking (a hidden panel stops polling). */
  active: boolean;
  /** Rows added, changed or removed, with the new display order. */
  readonly changed: ISignal<IEndpointsModel, IEndpointDiff>;
  /** An endpoint is gone (deleted here or elsewhere). */
  readonly removed: ISignal<IEndpointsModel, string>;
  readonly deleting: ISignal<IEndpointsModel, IDeletion>;
  readonly buildProgress: ISignal<IEndpointsModel, IBuildProgress>;
  readonly statusChanged: ISignal<IEndpointsModel, ConnectionStatus>;
  /** Fetches a listing that starts after this call; resolves when it is applied. */
  refresh(): Promise<void>;
  /** Starts, stops or restarts `name`, then refreshes; rejects with the server's error. */
  run(name: string, action: EndpointAction): Promise<void>;
  /** Deletes `name`, then refreshes; rejects with the server's error. */
  remove(name: string): Promise<void>;
}

export const IEndpointsModel = new Token<IEndpointsModel>(
  '@edgebook/labextension:IEndpointsModel',
  'The edgebook gateway endpoints: listing, actions and change signals.'
);

/** The sidebar plugin's settings (`schema/sidebar.json`). */
export interface ISidebarSettings {
  pollInterval: number;
  eventsTimeout: number;
  logTail: number;
  logInterval: number;
  requestsInterval: number;
  historyLimit: number;
  notificationTimeout: number;
}

export const DEFAULT_SETTINGS: Readonly<ISidebarSettings> = {
  pollInterval: 2000,
  eventsTimeout: 25000,
  logTail: 500,
  logInterval: 1000,
  requestsInterval: 2000,
  historyLimit: 20,
  notificationTimeout: 3000
};
