/**
 * The one place HTTP goes out: `requestAPI` for the server extension's JSON routes, plus the
 * data-plane proxy and the event stream, all through `serverFetch` with Jupyter's auth.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { errorMessage, parseSSE } from './model';
import {
  API_NAMESPACE,
  IErrorBody,
  IGatewayEvent,
  IProxyResponse,
  PROXY_NAMESPACE
} from './tokens';

/** An error answered by the server extension (or status 0: it could not be reached). */
export class APIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: Partial<IErrorBody> | null = null
  ) {
    super(message);
    this.name = 'APIError';
  }

  get errorType(): string {
    return this.body?.error_type ?? (this.status ? 'http_error' : 'unreachable');
  }
}

/** Fetches `path` (relative to Jupyter's base URL) with the server's auth headers. */
async function serverFetch(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<Response> {
  const url = URLExt.join(settings.baseUrl, path);
  try {
    return await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new APIError(0, `cannot reach the Jupyter server: ${String(error)}`);
  }
}

/**
 * Calls `/edgebook/api/<endPoint>` and returns its JSON body (null for an empty body).
 * Non-2xx answers raise `APIError` carrying the server's error body.
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings?: ServerConnection.ISettings
): Promise<T> {
  const response = await serverFetch(URLExt.join(API_NAMESPACE, endPoint), init, settings);
  const text = await response.text();
  let data: unknown = null;
  if (text.length) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const body = data && typeof data === 'object' ? (data as Partial<IErrorBody>) : null;
    const message =
      body || typeof data !== 'string' || !data
        ? errorMessage(body, response.status)
        : `HTTP ${response.status}: ${data.slice(0, 200)}`;
    throw new APIError(response.status, message, body);
  }
  return data as T;
}

/** `endpoints/<name>` with the name escaped. */
export function endpointPath(name: string, action?: string): string {
  const base = `endpoints/${encodeURIComponent(name)}`;
  return action ? `${base}/${action}` : base;
}

/** Sends a request to the data plane through `/edgebook/proxy/<path>` and times it. */
export async function sendThroughProxy(
  method: string,
  pathAndQuery: string,
  headers: [string, string][],
  body: string | null,
  settings?: ServerConnection.ISettings
): Promise<IProxyResponse> {
  const init: RequestInit = { method, headers: new Headers(headers) };
  if (body !== null && body !== '' && method !== 'GET' && method !== 'HEAD') {
    init.body = body;
  }
  const started = performance.now();
  const response = await serverFetch(
    PROXY_NAMESPACE + '/' + pathAndQuery.replace(/^\/+/, ''),
    init,
    settings
  );
  const text = await response.text();
  const latencyMs = performance.now() - started;
  const responseHeaders: [string, string][] = [];
  response.headers.forEach((value, name) => responseHeaders.push([name, value]));
  return {
    status: response.status,
    statusText: response.statusText,
    headers: responseHeaders,
    body: text,
    latencyMs
  };
}

/**
 * Follows `/edgebook/api/events`, calling `onEvent` per event, until `signal` aborts.
 * Resolves when the stream ends; rejects with `APIError` when it cannot be opened.
 */
export async function followEvents(
  onEvent: (event: IGatewayEvent) => void,
  signal: AbortSignal,
  onOpen: () => void = () => undefined,
  settings?: ServerConnection.ISettings
): Promise<void> {
  const response = await serverFetch(
    URLExt.join(API_NAMESPACE, 'events'),
    { headers: { Accept: 'text/event-stream' }, signal },
    settings
  );
  if (!response.ok || !response.body) {
    throw new APIError(response.status, `event stream unavailable (HTTP ${response.status})`);
  }
  onOpen();
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return;
      }
      buffer += decoder.decode(value, { stream: true });
      const parsed = parseSSE(buffer);
      buffer = parsed.rest;
      for (const data of parsed.events) {
        try {
          onEvent(JSON.parse(data) as IGatewayEvent);
        } catch {
          // A keep-alive or a malformed event: nothing to show.
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}
