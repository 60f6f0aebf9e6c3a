/**
 * The sidebar's data handling: endpoint views, diffing, formatting and request helpers.
 *
 * Pure functions only (no DOM, no network), so they are unit-tested directly.
 */
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';

import type {
  IEndpoint,
  IEndpointMetrics,
  IErrorBody,
  ILogLine,
  IMetricsSnapshot,
  IOrigin
} from './tokens';

/** What one row of the endpoint list shows, already derived from the server's JSON. */
export interface IEndpointView {
  name: string;
  method: string;
  path: string;
  domain: string | null;
  state: string;
  desired: string | null;
  reason: string | null;
  revision: number | null;
  workers: number | null;
  requests: number;
  errors: number;
  errorRate: number | null;
  p50: number | null;
  p99: number | null;
  lastError: string | null;
  url: string | null;
  origin: IOrigin | null;
}

/** How a state looks: `ok` green, `busy` amber, `idle` grey, `error` red. */
export type StateTone = 'ok' | 'busy' | 'idle' | 'error';

const TONES: Record<string, StateTone> = {
  running: 'ok',
  // Running, while the latest build (or its revision's start) failed: the live revision
  // keeps its green state and actions; the failure shows as a warning.
  running_build_failed: 'ok',
  running_deploy_failed: 'ok',
  building: 'busy',
  starting: 'busy',
  created: 'idle',
  stopped: 'idle',
  build_failed: 'error',
  deploy_failed: 'error',
  crash_looping: 'error'
};

export function stateTone(state: string): StateTone {
  return TONES[state] ?? 'idle';
}

/**
 * A state in words, translated: the same words as the admin page, the notebook's cards and
 * `%edgebook status` (`running_build_failed` -> `running, latest build failed`), else the
 * state with spaces (`crash_looping` -> `crash looping`).
 */
export function stateLabel(
  state: string,
  trans: TranslationBundle = nullTranslator.load('edgebook')
): string {
  switch (state) {
    case 'running_build_failed':
      return trans.__('running, latest build failed');
    case 'running_deploy_failed':
      return trans.__('running, latest revision failed to start');
    case 'build_failed':
      return trans.__('build failed');
    case 'deploy_failed':
      return trans.__('failed to start');
    case 'running':
      return trans.__('running');
    case 'stopped':
      return trans.__('stopped');
    case 'starting':
      return trans.__('starting');
    case 'building':
      return trans.__('building');
    case 'crash_looping':
      return trans.__('crash looping');
    default:
      return trans.__(state.replace(/_/g, ' '));
  }
}

/** States in which a live revision serves requests. */
export const SERVING_STATES = new Set([
  'running',
  'running_build_failed',
  'running_deploy_failed'
]);

/** A serving endpoint whose latest build or revision failed: shown as a warning. */
export function hasWarning(state: string): boolean {
  return state === 'running_build_failed' || state === 'running_deploy_failed';
}

function isSnapshot(
  m: IEndpointMetrics | IMetricsSnapshot
): m is IMetricsSnapshot {
  return typeof (m as IMetricsSnapshot).latency_ms === 'object' && m !== null;
}

function sumCounts(value: unknown): number {
  if (typeof value === 'number' && Number.isFinite(value)) {
    return value;
  }
  if (value && typeof value === 'object') {
    return Object.values(value as Record<string, unknown>).reduce<number>(
      (total, n) =>
        total + (typeof n === 'number' && Number.isFinite(n) ? n : 0),
      0
    );
  }
  return 0;
}

function numberOrNull(value: unknown): number | null {
  if (typeof value === 'string' && /^\d+(\.\d+)?$/.test(value)) {
    return Number(value);
  }
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** Requests, errors and latency percentiles from either metrics shape. */
export function summarizeMetrics(
  metrics: IEndpointMetrics | IMetricsSnapshot | null | undefined
): {
  requests: number;
  errors: number;
  p50: number | null;
  p99: number | null;
} {
  if (!metrics) {
    return { requests: 0, errors: 0, p50: null, p99: null };
  }
  const requests = numberOrNull(metrics.requests) ?? 0;
  if (isSnapshot(metrics)) {
    let errors = sumCounts(metrics.errors);
    if (!errors && metrics.responses) {
      errors = sumCounts(metrics.responses['5xx']);
    }
    return {
      requests,
      errors,
      p50: numberOrNull(metrics.latency_ms.p50),
      p99: numberOrNull(metrics.latency_ms.p99)
    };
  }
  return {
    requests,
    errors: sumCounts(metrics.errors),
    p50: numberOrNull(metrics.p50),
    p99: numberOrNull(metrics.p99)
  };
}

/** Errors per request, or null before the first request. */
export function errorRate(requests: number, errors: number): number | null {
  if (!requests || requests <= 0) {
    return null;
  }
  return Math.min(1, Math.max(0, errors / requests));
}

/** The view of one endpoint, tolerant of fields either side has not sent yet. */
export function toView(endpoint: IEndpoint): IEndpointView {
  const metrics = summarizeMetrics(endpoint.metrics);
  const options = (endpoint.options ?? {}) as Record<string, unknown>;
  const runtime = endpoint.runtime ?? null;
  const workers =
    numberOrNull(endpoint.workers) ??
    (runtime && Array.isArray(runtime.workers) && runtime.state === 'running'
      ? runtime.workers.length
      : null) ??
    numberOrNull(runtime?.workers_wanted) ??
    numberOrNull(options.workers);
  const failed = stateTone(endpoint.state) === 'error';
  return {
    name: endpoint.name,
    method: (endpoint.method || 'GET').toUpperCase(),
    path: endpoint.path,
    domain: endpoint.domain ?? null,
    state: endpoint.state || 'created',
    desired: endpoint.desired ?? null,
    reason: endpoint.reason ?? null,
    revision:
      numberOrNull(endpoint.revision) ??
      numberOrNull(endpoint.live_revision) ??
      numberOrNull(runtime?.revision),
    workers,
    requests: metrics.requests,
    errors: metrics.errors,
    errorRate: errorRate(metrics.requests, metrics.errors),
    p50: metrics.p50,
    p99: metrics.p99,
    lastError:
      endpoint.last_error ??
      runtime?.deploy_error ??
      (failed ? (endpoint.reason ?? null) : null),
    url: endpoint.url ?? null,
    origin: endpoint.origin ?? null
  };
}

/** What changed between the rows on screen and a new listing. */
export interface IEndpointDiff {
  added: string[];
  removed: string[];
  changed: string[];
  /** Every name of the new listing, in display order. */
  order: string[];
}

/** Display order: by path, then method, then name. */
export function sortViews(views: IEndpointView[]): IEndpointView[] {
  return [...views].sort(
    (a, b) =>
      a.path.localeCompare(b.path) ||
      a.method.localeCompare(b.method) ||
      a.name.localeCompare(b.name)
  );
}

/** The fields of `a` and `b` whose values differ (origin compared by value). */
export function changedFields(
  a: IEndpointView,
  b: IEndpointView
): (keyof IEndpointView)[] {
  const keys = Object.keys(b) as (keyof IEndpointView)[];
  return keys.filter(key => {
    const x = a[key];
    const y = b[key];
    if (x && y && typeof x === 'object') {
      return JSON.stringify(x) !== JSON.stringify(y);
    }
    return x !== y;
  });
}

/** Diffs the current rows against a new listing, so only what changed is touched. */
export function diffEndpoints(
  current: ReadonlyMap<string, IEndpointView>,
  next: IEndpointView[]
): IEndpointDiff {
  const sorted = sortViews(next);
  const names = new Set(sorted.map(v => v.name));
  const added: string[] = [];
  const changed: string[] = [];
  for (const view of sorted) {
    const old = current.get(view.name);
    if (!old) {
      added.push(view.name);
    } else if (changedFields(old, view).length) {
      changed.push(view.name);
    }
  }
  const removed = [...current.keys()].filter(name => !names.has(name));
  return { added, removed, changed, order: sorted.map(v => v.name) };
}

// -- formatting ---------------------------------------------------------------------------

const DASH = '\u2013';

function numberFormat(
  locale: string | undefined,
  options: Intl.NumberFormatOptions
): Intl.NumberFormat {
  try {
    return new Intl.NumberFormat(locale, options);
  } catch {
    return new Intl.NumberFormat(undefined, options); // an unknown locale tag
  }
}

function fixed(n: number, digits: number, locale?: string): string {
  return numberFormat(locale, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits
  }).format(n);
}

/**
 * Milliseconds for humans: `0.42 ms`, `3.1 ms`, `120 ms`, `1.20 s`; a dash for none.
 * Numbers follow `locale` (the user's, when undefined).
 */
export function formatMs(
  ms: number | null | undefined,
  locale?: string
): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) {
    return DASH;
  }
  if (ms < 1) {
    return `${fixed(ms, 2, locale)} ms`;
  }
  if (ms < 10) {
    return `${fixed(ms, 1, locale)} ms`;
  }
  if (ms < 1000) {
    return `${fixed(Math.round(ms), 0, locale)} ms`;
  }
  return `${fixed(ms / 1000, 2, locale)} s`;
}

/** An error rate: `0%`, `<0.1%`, `2.5%`, `100%`; a dash before the first request. */
export function formatPercent(
  rate: number | null | undefined,
  locale?: string
): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) {
    return DASH;
  }
  if (rate === 0) {
    return `${fixed(0, 0, locale)}%`;
  }
  const percent = rate * 100;
  if (percent < 0.1) {
    return `<${fixed(0.1, 1, locale)}%`;
  }
  if (percent >= 100) {
    return `${fixed(100, 0, locale)}%`;
  }
  return `${percent < 10 ? fixed(percent, 1, locale) : fixed(Math.round(percent), 0, locale)}%`;
}

/** Counts: `999`, `12,345`, `123k`, `4.5M` (grouping and decimals as `locale` writes them). */
export function formatCount(
  n: number | null | undefined,
  locale?: string
): string {
  if (n === null || n === undefined || !Number.isFinite(n)) {
    return DASH;
  }
  if (n < 100000) {
    return fixed(Math.round(n), 0, locale);
  }
  if (n < 1e6) {
    return `${fixed(Math.round(n / 1000), 0, locale)}k`;
  }
  return `${fixed(n / 1e6, 1, locale)}M`;
}

/** A log line's text, whether the server sent an object or a string. */
export function logLineText(line: ILogLine | string): string {
  if (typeof line === 'string') {
    return line;
  }
  const source =
    line.source && line.source !== 'stderr' ? `[${line.source}] ` : '';
  return `${source}${line.text ?? ''}`;
}

/** A readable message from an error body, falling back to the HTTP status. */
export function errorMessage(body: unknown, status: number): string {
  const err = body as Partial<IErrorBody> | null;
  if (err && typeof err === 'object' && typeof err.error === 'string') {
    return err.error_type ? `${err.error} (${err.error_type})` : err.error;
  }
  return `HTTP ${status}`;
}

// -- URLs, curl and the request builder ------------------------------------------------------

/** The endpoint's public URL: the gateway's own when known, else `base` + path. */
export function endpointUrl(
  view: Pick<IEndpointView, 'url' | 'path'>,
  base?: string
): string {
  if (view.url) {
    return view.url;
  }
  const root = (base ?? '').replace(/\/+$/, '');
  return `${root}${view.path.startsWith('/') ? '' : '/'}${view.path}`;
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) {
    return word;
  }
  return `'${word.replace(/'/g, "'\\''")}'`;
}

export interface ICurlSpec {
  method: string;
  url: string;
  headers?: [string, string][];
  body?: string | null;
}

/** A curl command line that sends the same request. */
export function curlCommand(spec: ICurlSpec): string {
  const parts = ['curl'];
  const method = spec.method.toUpperCase();
  if (/[{}[\]]/.test(spec.url)) {
    parts.push('--globoff');
  }
  if (method === 'HEAD') {
    parts.push('--head');
  } else if (method !== 'GET' || spec.body) {
    parts.push('-X', method);
  }
  parts.push(shellQuote(spec.url));
  for (const [name, value] of spec.headers ?? []) {
    parts.push('-H', shellQuote(`${name}: ${value}`));
  }
  if (spec.body) {
    parts.push('--data-raw', shellQuote(spec.body));
  }
  return parts.join(' ');
}

/** A query string from what the user typed (`a=1&b=2`, one per line, or with a leading `?`). */
export function normalizeQuery(text: string): string {
  const pairs = text
    .trim()
    .replace(/^\?/, '')
    .split(/[\n&]/)
    .map(part => part.trim())
    .filter(Boolean);
  return pairs
    .map(pair => {
      const at = pair.indexOf('=');
      const key = at < 0 ? pair : pair.slice(0, at);
      const value = at < 0 ? '' : pair.slice(at + 1);
      return at < 0
        ? encodeQueryPart(key)
        : `${encodeQueryPart(key)}=${encodeQueryPart(value)}`;
    })
    .join('&');
}

function encodeQueryPart(part: string): string {
  // Keep what the user already percent-encoded; encode everything else.
  try {
    return encodeURIComponent(decodeURIComponent(part));
  } catch {
    return encodeURIComponent(part);
  }
}

/** `path` plus query, always starting with one slash. */
export function pathWithQuery(path: string, query: string): string {
  const clean = '/' + path.trim().replace(/^\/+/, '');
  const qs = normalizeQuery(query);
  return qs ? `${clean}?${qs}` : clean;
}

export interface IParsedHeaders {
  headers: [string, string][];
  /** Lines that are not `Name: value`, by their 1-based number. */
  errors: { line: number }[];
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** `Name: value` lines; blank lines ignored; each bad line reported by its number. */
export function parseHeaders(text: string): IParsedHeaders {
  const headers: [string, string][] = [];
  const errors: { line: number }[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (!line) {
      return;
    }
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon).trim();
    if (colon <= 0 || !TOKEN.test(name)) {
      errors.push({ line: index + 1 });
      return;
    }
    headers.push([name, line.slice(colon + 1).trim()]);
  });
  return { headers, errors };
}

/** The value of the first Content-Type in `headers`, or null. */
export function contentTypeOf(headers: [string, string][]): string | null {
  return (
    headers.find(([name]) => name.toLowerCase() === 'content-type')?.[1] ?? null
  );
}

/** The credential headers among `headers` (`Authorization`, `Cookie`), as typed. */
export function sensitiveHeaders(headers: [string, string][]): string[] {
  const names = headers
    .map(([name]) => name)
    .filter(name =>
      ['authorization', 'cookie', 'proxy-authorization'].includes(
        name.toLowerCase()
      )
    );
  return [...new Set(names)];
}

export interface IJsonCheck {
  ok: boolean;
  /** Where and why parsing failed, e.g. `line 2, column 5: Unexpected token`. */
  message: string | null;
}

/** Whether a request body is valid JSON; an empty body is fine. */
export function checkJson(text: string): IJsonCheck {
  if (!text.trim()) {
    return { ok: true, message: null };
  }
  const problem = findJsonError(text);
  if (!problem) {
    return { ok: true, message: null };
  }
  const before = text.slice(0, problem.offset).split('\n');
  const line = before.length;
  const column = before[before.length - 1].length + 1;
  return {
    ok: false,
    message: `line ${line}, column ${column}: ${problem.reason}`
  };
}

/**
 * The first syntax error in `text` as JSON (RFC 8259), or null when it is valid.
 * Browsers word JSON.parse errors differently and some omit the position, so the position
 * comes from this small scanner instead.
 */
export function findJsonError(
  text: string
): { offset: number; reason: string } | null {
  let i = 0;
  const fail = (reason: string): never => {
    throw { offset: i, reason };
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) {
      i++;
    }
  };
  const describe = () =>
    i >= text.length
      ? 'unexpected end of input'
      : `unexpected ${JSON.stringify(text[i])}`;
  const literal = (word: string) => {
    if (text.startsWith(word, i)) {
      i += word.length;
    } else {
      fail(describe());
    }
  };
  const string = () => {
    i++; // opening quote
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) {
        fail('control character in string');
      }
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) {
            fail('bad \\u escape');
          }
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? '')) {
          fail('bad escape');
        }
      }
      i++;
    }
    if (i >= text.length) {
      fail('unterminated string');
    }
    i++;
  };
  const number = () => {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!match || !match[0] || match[0] === '-') {
      fail(describe());
    }
    i += match![0].length;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') {
          fail(
            text[i] === '}'
              ? 'trailing comma'
              : `expected a quoted key, ${describe()}`
          );
        }
        string();
        ws();
        if (text[i] !== ':') {
          fail(`expected ":", ${describe()}`);
        }
        i++;
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail(`expected "," or "}", ${describe()}`);
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] === ']') {
          fail('trailing comma');
        }
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail(`expected "," or "]", ${describe()}`);
      }
    } else if (c === '"') {
      string();
    } else if (c === 't') {
      literal('true');
    } else if (c === 'f') {
      literal('false');
    } else if (c === 'n') {
      literal('null');
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      number();
    } else {
      fail(describe());
    }
  };
  try {
    value();
    ws();
    if (i < text.length) {
      fail(`unexpected ${JSON.stringify(text[i])} after the value`);
    }
    return null;
  } catch (error) {
    return error as { offset: number; reason: string };
  }
}

/** A JSON body indented for reading; anything else unchanged. */
export function prettyBody(body: string, contentType: string | null): string {
  const looksJson = /json/i.test(contentType ?? '') || /^\s*[[{"]/.test(body);
  if (!looksJson || !body.trim()) {
    return body;
  }
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

/** One request sent from the builder, for its history. */
export interface IHistoryEntry {
  method: string;
  path: string;
  query: string;
  headers: string;
  body: string;
  status: number;
  latencyMs: number;
  at: number;
}

/** The history with `entry` first; an identical request moves up; at most `limit` kept. */
export function pushHistory(
  history: IHistoryEntry[],
  entry: IHistoryEntry,
  limit = 20
): IHistoryEntry[] {
  const same = (h: IHistoryEntry) =>
    h.method === entry.method &&
    h.path === entry.path &&
    h.query === entry.query &&
    h.headers === entry.headers &&
    h.body === entry.body;
  return [entry, ...history.filter(h => !same(h))].slice(0, limit);
}

/** The cell a new user can paste to create a first endpoint. */
export const FIRST_ENDPOINT_SNIPPET = `%%rust_handler GET /hello
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path}))
}

handler_loop!(handle);`;
