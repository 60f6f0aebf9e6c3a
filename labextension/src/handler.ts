/**
 * The one place HTTP goes out: `requestAPI` for the server extension's JSON routes and the
 * data-plane proxy, both through `serverFetch` with Jupyter's auth.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { errorMessage } from './model';
import {
  ADMIN_PAGE,
  API_NAMESPACE,
  IErrorBody,
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
    return (
      this.body?.error_type ?? (this.status ? 'http_error' : 'unreachable')
    );
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

/** The admin page's address through this Jupyter server (its trailing slash kept). */
export function adminPageUrl(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  const url = URLExt.join(settings.baseUrl, ADMIN_PAGE);
  return url.endsWith('/') ? url : url + '/';
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
  const response = await serverFetch(
    URLExt.join(API_NAMESPACE, endPoint),
    init,
    settings
  );
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
    const body =
      data && typeof data === 'object' ? (data as Partial<IErrorBody>) : null;
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

/**
 * The header that carries the builder's own headers to the proxy, base64 of JSON pairs.
 * The browser and Jupyter add headers of their own (Cookie, Authorization, a default
 * Content-Type) and forbid setting some; with this header the proxy forwards exactly the
 * listed ones instead, and names any it had to drop in `DROPPED_HEADERS_HEADER`.
 */
export const REQUEST_HEADERS_HEADER = 'X-Edgebook-Request-Headers';
export const DROPPED_HEADERS_HEADER = 'X-Edgebook-Dropped-Headers';

/** `pairs` as the value of `REQUEST_HEADERS_HEADER`. */
export function encodeRequestHeaders(pairs: [string, string][]): string {
  const bytes = new TextEncoder().encode(JSON.stringify(pairs));
  let binary = '';
  bytes.forEach(b => {
    binary += String.fromCharCode(b);
  });
  return btoa(binary);
}

/**
 * Sends a request to the data plane through `/edgebook/proxy/<path>` and times it. The
 * handler sees `headers` and nothing else; the body goes as bytes with no type of its own.
 */
export async function sendThroughProxy(
  method: string,
  pathAndQuery: string,
  headers: [string, string][],
  body: string | null,
  settings?: ServerConnection.ISettings
): Promise<IProxyResponse> {
  const init: RequestInit = {
    method,
    headers: { [REQUEST_HEADERS_HEADER]: encodeRequestHeaders(headers) }
  };
  if (body !== null && body !== '' && method !== 'GET' && method !== 'HEAD') {
    init.body = new Blob([body]);
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
  response.headers.forEach((value, name) =>
    responseHeaders.push([name, value])
  );
  const dropped = response.headers.get(DROPPED_HEADERS_HEADER);
  return {
    status: response.status,
    statusText: response.statusText,
    headers: responseHeaders.filter(
      ([name]) => name.toLowerCase() !== DROPPED_HEADERS_HEADER.toLowerCase()
    ),
    body: text,
    latencyMs,
    dropped: dropped
      ? dropped
          .split(',')
          .map(name => name.trim())
          .filter(Boolean)
      : []
  };
}
