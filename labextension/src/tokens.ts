/**
 * The JSON the edgebook server extension sends, field for field.
 *
 * Routes live under `/edgebook/api/` (Jupyter auth) and mirror the gateway's admin API:
 * `GET endpoints`, `GET|PUT|DELETE endpoints/{name}`, `POST endpoints/{name}/start|stop|restart`,
 * `GET endpoints/{name}/logs?tail=N`, `.../metrics`, `.../source`, and `GET events` (SSE).
 * The data plane is proxied at `/edgebook/proxy/<path>`.
 *
 * This module has no side effects: types and constants only.
 */

/** States a user can see for an endpoint (the registry's `STATES`). */
export type EndpointState =
  | 'created'
  | 'building'
  | 'build_failed'
  | 'starting'
  | 'running'
  | 'stopped'
  | 'crash_looping'
  | 'deploy_failed';

export const ENDPOINT_STATES: readonly EndpointState[] = [
  'created',
  'building',
  'build_failed',
  'starting',
  'running',
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

/** One event of `GET /edgebook/api/events`. */
export interface IGatewayEvent {
  type: 'state' | 'build' | 'endpoint_created' | 'endpoint_removed' | 'worker' | string;
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
}

/** Where the server extension's routes live, relative to Jupyter's base URL. */
export const API_NAMESPACE = 'edgebook/api';
export const PROXY_NAMESPACE = 'edgebook/proxy';

/** Plugin and widget ids. */
export const PANEL_ID = 'edgebook-sidebar';
export const PLUGIN_ID = '@edgebook/labextension:sidebar';
export const EDITOR_PLUGIN_ID = '@edgebook/labextension:rust-handler-highlighting';
