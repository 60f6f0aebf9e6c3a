import { TranslationBundle } from '@jupyterlab/translation';
import { describe, expect, it } from 'vitest';

import {
  changedFields,
  checkJson,
  contentTypeOf,
  curlCommand,
  diffEndpoints,
  endpointUrl,
  errorMessage,
  errorRate,
  findJsonError,
  formatCount,
  formatMs,
  formatPercent,
  IEndpointView,
  IHistoryEntry,
  logLineText,
  normalizeQuery,
  parseHeaders,
  pathWithQuery,
  prettyBody,
  pushHistory,
  sensitiveHeaders,
  shellQuote,
  sortViews,
  hasWarning,
  SERVING_STATES,
  stateLabel,
  stateTone,
  summarizeMetrics,
  toView
} from '../src/model';
import { IEndpoint } from '../src/tokens';

function endpoint(overrides: Partial<IEndpoint> = {}): IEndpoint {
  return {
    name: 'hello',
    method: 'GET',
    path: '/hello',
    domain: null,
    state: 'running',
    reason: null,
    revision: 3,
    workers: 2,
    options: { workers: 2, timeout: 30 },
    origin: { notebook: 'demo.ipynb', cell_id: 'abc' },
    metrics: { requests: 200, errors: 5, p50: 0.4, p99: 12.5 },
    last_error: null,
    ...overrides
  };
}

function view(overrides: Partial<IEndpoint> = {}): IEndpointView {
  return toView(endpoint(overrides));
}

describe('toView', () => {
  it('derives counts, rate and percentiles from the listing shape', () => {
    const v = view();
    expect(v).toMatchObject({
      name: 'hello',
      method: 'GET',
      revision: 3,
      workers: 2,
      requests: 200,
      errors: 5,
      p50: 0.4,
      p99: 12.5
    });
    expect(v.errorRate).toBeCloseTo(0.025);
  });

  it('reads the gateway metrics snapshot shape too', () => {
    const v = view({
      metrics: {
        requests: 10,
        responses: { '2xx': 8, '5xx': 2 },
        errors: { timeout: 1, worker_crashed: 1 },
        latency_ms: { window: 10, p50: 1.5, p90: 3, p99: 9.25 }
      }
    });
    expect(v.requests).toBe(10);
    expect(v.errors).toBe(2);
    expect(v.p50).toBe(1.5);
    expect(v.p99).toBe(9.25);
  });

  it('counts 5xx responses when a snapshot lists no error types', () => {
    const m = summarizeMetrics({
      requests: 4,
      responses: { '2xx': 3, '5xx': 1 },
      errors: {},
      latency_ms: { window: 4, p50: null, p90: null, p99: null }
    });
    expect(m.errors).toBe(1);
  });

  it('falls back to live_revision and options.workers, and tolerates missing metrics', () => {
    const v = toView({
      ...endpoint(),
      revision: undefined as unknown as null,
      live_revision: 7,
      workers: undefined as unknown as null,
      options: { workers: 4 },
      metrics: null,
      method: 'post'
    });
    expect(v.revision).toBe(7);
    expect(v.workers).toBe(4);
    expect(v.requests).toBe(0);
    expect(v.errorRate).toBeNull();
    expect(v.p50).toBeNull();
    expect(v.method).toBe('POST');
  });
});

describe('toView with the gateway admin API shape', () => {
  it('reads revision, workers and the deploy error from runtime', () => {
    const raw = {
      name: 'hello',
      method: 'GET',
      path: '/hello',
      domain: null,
      deps: [],
      options: { workers: 3 },
      origin: null,
      desired: 'running',
      state: 'running',
      reason: null,
      stderr_tail: null,
      live_revision: null,
      url: 'http://127.0.0.1:8080/hello',
      runtime: {
        name: 'hello',
        state: 'running',
        reason: null,
        revision: '4',
        route: { method: 'GET', path: '/hello', domain: null },
        workers: [
          { pid: 1, state: 'ready', inflight: 0, served: 1, revision: 4 },
          { pid: 2, state: 'ready', inflight: 0, served: 0, revision: 4 }
        ],
        workers_wanted: 3,
        spawned: 2,
        deploy_error: null,
        stderr_tail: []
      }
    } as IEndpoint;
    const v = toView(raw);
    expect(v.revision).toBe(4);
    expect(v.workers).toBe(2);
    expect(v.url).toBe('http://127.0.0.1:8080/hello');
    expect(v.lastError).toBeNull();
    expect(v.requests).toBe(0);
  });

  it('shows the reason of a failed endpoint as its last error', () => {
    const v = toView({
      ...endpoint(),
      state: 'deploy_failed',
      reason: 'worker exited',
      last_error: undefined
    });
    expect(v.lastError).toBe('worker exited');
    expect(
      toView({
        ...endpoint(),
        state: 'stopped',
        reason: 'stopped by user',
        last_error: undefined
      }).lastError
    ).toBeNull();
  });
});

describe('errorRate', () => {
  it('is null before the first request and clamped to [0, 1]', () => {
    expect(errorRate(0, 0)).toBeNull();
    expect(errorRate(10, 0)).toBe(0);
    expect(errorRate(4, 1)).toBe(0.25);
    expect(errorRate(2, 5)).toBe(1);
  });
});

describe('diffEndpoints', () => {
  it('reports added, changed and removed rows and the display order', () => {
    const current = new Map<string, IEndpointView>([
      ['hello', view()],
      ['gone', view({ name: 'gone', path: '/gone' })],
      ['same', view({ name: 'same', path: '/same' })]
    ]);
    const next = [
      view({ name: 'same', path: '/same' }),
      view({ metrics: { requests: 201, errors: 5, p50: 0.4, p99: 12.5 } }),
      view({ name: 'new', method: 'POST', path: '/a' })
    ];
    const diff = diffEndpoints(current, next);
    expect(diff.added).toEqual(['new']);
    expect(diff.changed).toEqual(['hello']);
    expect(diff.removed).toEqual(['gone']);
    expect(diff.order).toEqual(['new', 'hello', 'same']);
  });

  it('reports nothing when the listing is the same', () => {
    const current = new Map([['hello', view()]]);
    const diff = diffEndpoints(current, [view()]);
    expect(diff).toEqual({
      added: [],
      removed: [],
      changed: [],
      order: ['hello']
    });
  });

  it('compares origins by value', () => {
    expect(changedFields(view(), view())).toEqual([]);
    expect(
      changedFields(
        view(),
        view({ origin: { notebook: 'other.ipynb', cell_id: 'abc' } })
      )
    ).toEqual(['origin']);
    expect(changedFields(view(), view({ state: 'stopped' }))).toEqual([
      'state'
    ]);
  });

  it('orders by path, then method, then name', () => {
    const sorted = sortViews([
      view({ name: 'b', method: 'POST', path: '/x' }),
      view({ name: 'a', method: 'GET', path: '/x' }),
      view({ name: 'c', method: 'GET', path: '/a' })
    ]);
    expect(sorted.map(v => v.name)).toEqual(['c', 'a', 'b']);
  });
});

describe('formatting', () => {
  it('formats milliseconds', () => {
    expect(formatMs(null, 'en-US')).toBe('\u2013');
    expect(formatMs(0.4237, 'en-US')).toBe('0.42 ms');
    expect(formatMs(3.14, 'en-US')).toBe('3.1 ms');
    expect(formatMs(120.4, 'en-US')).toBe('120 ms');
    expect(formatMs(1234, 'en-US')).toBe('1.23 s');
  });

  it('formats error rates', () => {
    expect(formatPercent(null, 'en-US')).toBe('\u2013');
    expect(formatPercent(0, 'en-US')).toBe('0%');
    expect(formatPercent(0.0004, 'en-US')).toBe('<0.1%');
    expect(formatPercent(0.025, 'en-US')).toBe('2.5%');
    expect(formatPercent(0.5, 'en-US')).toBe('50%');
    expect(formatPercent(1, 'en-US')).toBe('100%');
  });

  it('formats counts', () => {
    expect(formatCount(999, 'en-US')).toBe('999');
    expect(formatCount(12345, 'en-US')).toBe('12,345');
    expect(formatCount(123456, 'en-US')).toBe('123k');
    expect(formatCount(4_500_000, 'en-US')).toBe('4.5M');
  });

  it("follows the user's locale for separators", () => {
    expect(formatCount(12345, 'de-DE')).toBe('12.345');
    expect(formatMs(3.14, 'de-DE')).toBe('3,1 ms');
    expect(formatPercent(0.025, 'fr-FR')).toBe('2,5%');
    expect(formatCount(4_500_000, 'de-DE')).toBe('4,5M');
  });

  it('names states and their colours', () => {
    expect(stateLabel('crash_looping')).toBe('crash looping');
    expect(stateLabel('something_new')).toBe('something new');
    // Through the user's language pack: every label is a translatable string.
    const shout = {
      __: (text: string) => text.toUpperCase()
    } as unknown as TranslationBundle;
    expect(stateLabel('running_build_failed', shout)).toBe(
      'RUNNING, LATEST BUILD FAILED'
    );
    expect(stateLabel('stopped', shout)).toBe('STOPPED');
    expect(stateTone('running')).toBe('ok');
    expect(stateTone('building')).toBe('busy');
    expect(stateTone('stopped')).toBe('idle');
    expect(stateTone('build_failed')).toBe('error');
    expect(stateTone('crash_looping')).toBe('error');
    expect(stateTone('something_new')).toBe('idle');
  });

  it('shows a serving endpoint whose latest build failed as running, with a warning', () => {
    expect(stateTone('running_build_failed')).toBe('ok');
    expect(stateLabel('running_build_failed')).toBe(
      'running, latest build failed'
    );
    expect(hasWarning('running_build_failed')).toBe(true);
    expect(hasWarning('running_deploy_failed')).toBe(true);
    expect(hasWarning('running')).toBe(false);
    expect(hasWarning('build_failed')).toBe(false);
    expect(SERVING_STATES.has('running_build_failed')).toBe(true);
  });

  it('reads log lines as objects or strings', () => {
    expect(logLineText('plain')).toBe('plain');
    expect(logLineText({ text: 'from stderr', source: 'stderr' })).toBe(
      'from stderr'
    );
    expect(
      logLineText({
        seq: 3,
        time: 1,
        source: 'gateway',
        text: 'revision 2 is serving'
      })
    ).toBe('[gateway] revision 2 is serving');
  });

  it('turns error bodies into messages', () => {
    expect(
      errorMessage({ error: 'no such endpoint', error_type: 'not_found' }, 404)
    ).toBe('no such endpoint (not_found)');
    expect(errorMessage(null, 502)).toBe('HTTP 502');
  });
});

describe('curl', () => {
  it('quotes for a POSIX shell', () => {
    expect(shellQuote('http://127.0.0.1:8080/hello')).toBe(
      'http://127.0.0.1:8080/hello'
    );
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(shellQuote('a b')).toBe("'a b'");
  });

  it('writes a plain GET without -X', () => {
    expect(
      curlCommand({ method: 'GET', url: 'http://127.0.0.1:8080/hello' })
    ).toBe('curl http://127.0.0.1:8080/hello');
  });

  it('writes method, headers and body, and turns globbing off for {params}', () => {
    const cmd = curlCommand({
      method: 'post',
      url: 'http://127.0.0.1:8080/users/{id}?q=a&b=1',
      headers: [['Content-Type', 'application/json']],
      body: '{"name": "O\'Neil"}'
    });
    expect(cmd).toBe(
      "curl --globoff -X POST 'http://127.0.0.1:8080/users/{id}?q=a&b=1' " +
        "-H 'Content-Type: application/json' --data-raw '{\"name\": \"O'\\''Neil\"}'"
    );
  });

  it('uses --head for HEAD', () => {
    expect(curlCommand({ method: 'HEAD', url: 'http://h/x' })).toBe(
      'curl --head http://h/x'
    );
  });

  it('builds URLs from the gateway URL or a base', () => {
    expect(
      endpointUrl({ url: 'http://127.0.0.1:9/hello', path: '/hello' })
    ).toBe('http://127.0.0.1:9/hello');
    expect(endpointUrl({ url: null, path: '/hello' }, 'http://h:1/')).toBe(
      'http://h:1/hello'
    );
  });
});

describe('request builder helpers', () => {
  it('normalizes query strings', () => {
    expect(normalizeQuery('?a=1&b=two words')).toBe('a=1&b=two%20words');
    expect(normalizeQuery('a=1\nb=%20x\nflag')).toBe('a=1&b=%20x&flag');
    expect(normalizeQuery('')).toBe('');
  });

  it('joins path and query with one leading slash', () => {
    expect(pathWithQuery('hello', '')).toBe('/hello');
    expect(pathWithQuery('//hello', 'x=1')).toBe('/hello?x=1');
  });

  it('parses headers and reports bad lines by number', () => {
    expect(parseHeaders('Accept: application/json\n\nX-Trace:  1 2 ')).toEqual({
      headers: [
        ['Accept', 'application/json'],
        ['X-Trace', '1 2']
      ],
      errors: []
    });
    expect(parseHeaders('no colon here\nBad Name: x').errors).toEqual([
      { line: 1 },
      { line: 2 }
    ]);
  });

  it('finds the content type and credential headers as typed', () => {
    const { headers } = parseHeaders(
      'content-type: text/csv\nAuthorization: Bearer x\nCookie: a=1'
    );
    expect(contentTypeOf(headers)).toBe('text/csv');
    expect(contentTypeOf([])).toBeNull();
    expect(sensitiveHeaders(headers)).toEqual(['Authorization', 'Cookie']);
  });

  it('validates JSON bodies with a line and column', () => {
    expect(checkJson('')).toEqual({ ok: true, message: null });
    expect(checkJson('{"a": [1, 2]}')).toEqual({ ok: true, message: null });
    const bad = checkJson('{\n  "a": 1,\n  oops\n}');
    expect(bad).toEqual({
      ok: false,
      message: 'line 3, column 3: expected a quoted key, unexpected "o"'
    });
    expect(checkJson('{"a": }').message).toBe(
      'line 1, column 7: unexpected "}"'
    );
  });

  it('finds JSON errors where JSON.parse does, whatever the engine says', () => {
    const valid = [
      '0',
      '-1.5e3',
      '"\\u00e9\\n"',
      '[]',
      '{}',
      '[1, [true, false, null], {"a": {"b": "c"}}]',
      ' {"x" : 1 } '
    ];
    for (const text of valid) {
      expect(findJsonError(text), text).toBeNull();
      expect(() => JSON.parse(text)).not.toThrow();
    }
    const invalid: [string, number, string][] = [
      ['[1, 2,]', 6, 'trailing comma'],
      ['{"a": 1,}', 8, 'trailing comma'],
      ['{"a" 1}', 5, 'expected ":", unexpected "1"'],
      ['[1 2]', 3, 'expected "," or "]", unexpected "2"'],
      ['"abc', 4, 'unterminated string'],
      ['01', 1, 'unexpected "1" after the value'],
      ['tru', 0, 'unexpected "t"'],
      ['{"a": "b\\x"}', 9, 'bad escape'],
      ['[', 1, 'unexpected end of input'],
      ["{'a': 1}", 1, 'expected a quoted key, unexpected "\'"']
    ];
    for (const [text, offset, reason] of invalid) {
      expect(findJsonError(text), text).toEqual({ offset, reason });
      expect(() => JSON.parse(text), text).toThrow();
    }
  });

  it('pretty-prints JSON bodies only', () => {
    expect(prettyBody('{"a":1}', 'application/json')).toBe('{\n  "a": 1\n}');
    expect(prettyBody('[1,2]', null)).toBe('[\n  1,\n  2\n]');
    expect(prettyBody('hello', 'text/plain')).toBe('hello');
    expect(prettyBody('{broken', 'application/json')).toBe('{broken');
  });

  it('keeps a bounded history with the newest first and no duplicates', () => {
    const entry = (path: string, status = 200): IHistoryEntry => ({
      method: 'GET',
      path,
      query: '',
      headers: '',
      body: '',
      status,
      latencyMs: 1,
      at: 0
    });
    let history: IHistoryEntry[] = [];
    history = pushHistory(history, entry('/a'));
    history = pushHistory(history, entry('/b'));
    history = pushHistory(history, entry('/a', 500));
    expect(history.map(h => [h.path, h.status])).toEqual([
      ['/a', 500],
      ['/b', 200]
    ]);
    for (let i = 0; i < 30; i++) {
      history = pushHistory(history, entry(`/${i}`), 5);
    }
    expect(history).toHaveLength(5);
    expect(history[0].path).toBe('/29');
  });
});
