// The headless admin page: log in with the admin token, list endpoints, create or edit one,
// build it (diagnostics at their lines), start/stop/delete, and try requests.
// Every admin call goes through `api()`; requests to endpoints go through `PROXY`.
// No third-party code, nothing from a CDN.
//
// Two hosts serve it. The gateway's admin listener, at /admin/: calls go to /api/ with the
// admin token as a bearer token, endpoints through /admin/proxy/. The Jupyter server
// extension, at <base>/edgebook/admin/: Jupyter's login already stands in front, so calls go
// to <base>/edgebook/api/ with Jupyter's cookie and XSRF token, endpoints through
// <base>/edgebook/proxy/, and the page never asks for a token.

const $ = id => document.getElementById(id);
/** Jupyter's base URL when the Jupyter server extension serves the page, else null. */
const JUPYTER_BASE = /^(.*\/)edgebook\/admin\/(index\.html)?$/.exec(location.pathname)?.[1] ?? null;
const API = JUPYTER_BASE === null ? '/api/' : `${JUPYTER_BASE}edgebook/api/`;
const PROXY = JUPYTER_BASE === null ? '/admin/proxy' : `${JUPYTER_BASE}edgebook/proxy`;
const TOKEN_KEY = 'edgebook-admin-token';
const TEMPLATE = `use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path}))
}

handler_loop!(handle);
`;

let token = sessionStorage.getItem(TOKEN_KEY) || '';
let dataPlaneUrl = '';
let pollTimer = null;
let events = null;
let history = [];
const rows = new Map();
/** Routes (`METHOD /path`) as last listed, so a new endpoint's form starts on a free one. */
let routes = new Set();
/** Whether the editor holds something the user typed or loaded (then it is left alone). */
let editorTouched = false;

/** Credentials for a call: the admin token, or Jupyter's XSRF token (its cookie goes along). */
function credentials() {
  if (JUPYTER_BASE === null) {
    return { Authorization: `Bearer ${token}` };
  }
  const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf='));
  return xsrf ? { 'X-XSRFToken': decodeURIComponent(xsrf.slice('_xsrf='.length)) } : {};
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? `${body.error} (${body.error_type})` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** Calls the admin API at `path` (`endpoints/x`); JSON both ways; raises ApiError. */
async function api(path, init = {}) {
  const headers = { ...credentials(), Accept: 'application/json', ...(init.headers || {}) };
  if (init.body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(API + path, { ...init, headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, data);
  }
  return data;
}

const enc = encodeURIComponent;

// -- login ------------------------------------------------------------------------------

async function login(candidate) {
  token = candidate;
  try {
    const health = await api('health');
    const stats = await api('stats').catch(() => ({}));
    dataPlaneUrl = (stats.url || '').replace(/\/+$/, '');
    if (JUPYTER_BASE === null) {
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    const where = JUPYTER_BASE === null ? 'gateway' : 'through Jupyter · gateway';
    $('gateway').textContent = `${where} ${health.version || ''}${dataPlaneUrl ? ` · data plane ${dataPlaneUrl}` : ''}`;
    $('login').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = JUPYTER_BASE !== null;
    startLive();
    return true;
  } catch (error) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    const refused = error.status === 401 || error.status === 403;
    if (JUPYTER_BASE !== null) {
      $('login').hidden = true;
      $('gateway').textContent = refused
        ? 'Jupyter did not accept this session: reload the page to log in again.'
        : `Cannot reach the gateway through Jupyter: ${error.message}`;
      return false;
    }
    $('login-error').textContent = refused
      ? 'That token was not accepted.'
      : `Cannot reach the admin API: ${error.message}`;
    return false;
  }
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  token = '';
  stopLive();
  $('app').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('gateway').textContent = '';
  $('token').value = '';
  $('token').focus();
}

// -- endpoint list ------------------------------------------------------------------------

const TONES = { running: 'ok', building: 'busy', starting: 'busy', created: 'idle', stopped: 'idle',
  build_failed: 'error', deploy_failed: 'error', crash_looping: 'error',
  running_build_failed: 'ok', running_deploy_failed: 'ok' };
// The same words as the sidebar, the notebook's cards and %edgebook status.
const LABELS = { running_build_failed: 'running, latest build failed',
  running_deploy_failed: 'running, latest revision failed to start',
  build_failed: 'build failed', deploy_failed: 'failed to start' };
const SERVING = ['running', 'running_build_failed', 'running_deploy_failed'];

function stateLabel(state) {
  return LABELS[state] || state.replace(/_/g, ' ');
}

function ms(value) {
  if (value === null || value === undefined) return '–';
  return value < 10 ? `${value.toFixed(2)} ms` : `${Math.round(value)} ms`;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function makeRow(name) {
  const tr = document.createElement('tr');
  tr.dataset.name = name;
  tr.innerHTML = '<td class="route"><span class="method"></span><span class="path"></span></td>' +
    '<td class="name"></td><td><span class="state"></span></td><td class="rev"></td><td class="workers"></td>' +
    '<td class="requests"></td><td class="errors"></td><td class="p50"></td><td class="p99"></td><td class="actions"></td>';
  const actions = tr.querySelector('.actions');
  for (const [label, fn] of [['Edit', editEndpoint], ['Start', n => act(n, 'start')],
    ['Stop', n => act(n, 'stop')], ['Delete', deleteEndpoint]]) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = label;
    button.setAttribute('aria-label', `${label} ${name}`);
    button.addEventListener('click', () => fn(name));
    actions.append(button);
  }
  return tr;
}

function renderRow(tr, e, m) {
  const q = sel => tr.querySelector(sel);
  setText(q('.method'), e.method);
  setText(q('.path'), e.path);
  setText(q('.name'), e.name);
  const state = q('.state');
  setText(state, stateLabel(e.state));
  state.dataset.tone = TONES[e.state] || 'idle';
  state.dataset.warning = e.state.startsWith('running_') ? 'true' : 'false';
  tr.dataset.state = e.state;
  setText(q('.rev'), String(e.live_revision ?? e.runtime?.revision ?? '–'));
  const workers = e.runtime?.workers?.length ?? e.options?.workers;
  setText(q('.workers'), workers === undefined ? '–' : String(workers));
  const requests = m?.requests ?? 0;
  const errors = Object.values(m?.errors || {}).reduce((a, b) => a + b, 0);
  setText(q('.requests'), String(requests));
  setText(q('.errors'), requests ? `${((100 * errors) / requests).toFixed(1)}%` : '–');
  setText(q('.p50'), ms(m?.latency_ms?.p50));
  setText(q('.p99'), ms(m?.latency_ms?.p99));
  q('[aria-label^="Start"]').disabled = SERVING.includes(e.state);
  q('[aria-label^="Stop"]').disabled = ![...SERVING, 'starting', 'crash_looping'].includes(e.state);
  tr.title = e.reason || '';
}

async function refresh() {
  try {
    const { endpoints } = await api('endpoints');
    const metrics = await Promise.all(endpoints.map(e => (e.runtime
      ? api(`endpoints/${enc(e.name)}/metrics`).then(r => r.metrics || r).catch(() => null)
      : null)));
    const tbody = $('endpoints').tBodies[0];
    const names = new Set(endpoints.map(e => e.name));
    for (const [name, tr] of rows) {
      if (!names.has(name)) {
        tr.remove();
        rows.delete(name);
      }
    }
    endpoints.sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
    endpoints.forEach((e, i) => {
      let tr = rows.get(e.name);
      if (!tr) {
        tr = makeRow(e.name);
        rows.set(e.name, tr);
      }
      renderRow(tr, e, metrics[i]);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    routes = new Set(endpoints.map(e => `${e.method} ${e.path}`));
    if (!editorTouched) {
      fillNewEndpoint();
    }
    const running = endpoints.filter(e => SERVING.includes(e.state)).length;
    $('endpoint-count').textContent = endpoints.length
      ? `${plural(endpoints.length, 'endpoint')}, ${running} running`
      : '';
    $('empty').hidden = endpoints.length > 0;
    $('endpoints').hidden = endpoints.length === 0;
    $('list-error').textContent = '';
  } catch (error) {
    if (error.status === 401 && JUPYTER_BASE === null) {
      logout();
      return;
    }
    $('list-error').textContent = `Cannot list endpoints: ${error.message}`;
  }
}

function startLive() {
  stopLive();
  refresh();
  pollTimer = setInterval(() => {
    if (!document.hidden) refresh();
  }, 2000);
  events = new EventSource(JUPYTER_BASE === null ? `${API}events?token=${enc(token)}` : `${API}events`);
  for (const type of ['state', 'build', 'endpoint_created', 'endpoint_removed']) {
    events.addEventListener(type, event => {
      const data = JSON.parse(event.data);
      if (type === 'build' && data.endpoint === $('ed-name').value && data.phase === 'progress' && data.message) {
        $('ed-status').textContent = data.message;
      }
      refresh();
    });
  }
}

function stopLive() {
  clearInterval(pollTimer);
  pollTimer = null;
  if (events) events.close();
  events = null;
}

async function act(name, action) {
  try {
    await api(`endpoints/${enc(name)}/${action}`, { method: 'POST' });
  } catch (error) {
    $('list-error').textContent = `Could not ${action} ${name}: ${error.message}`;
  }
  refresh();
}

async function deleteEndpoint(name) {
  if (!window.confirm(`Delete ${name}? It stops serving and its revisions are removed.`)) return;
  try {
    await api(`endpoints/${enc(name)}`, { method: 'DELETE' });
  } catch (error) {
    $('list-error').textContent = `Could not delete ${name}: ${error.message}`;
  }
  refresh();
}

// -- editor ------------------------------------------------------------------------------

function paintGutter(badLines = new Set()) {
  const count = $('ed-source').value.split('\n').length;
  const gutter = $('ed-gutter');
  gutter.replaceChildren(...Array.from({ length: count }, (_, i) => {
    const span = document.createElement('span');
    span.textContent = `${i + 1}\n`;
    if (badLines.has(i + 1)) span.className = 'bad';
    return span;
  }));
  gutter.scrollTop = $('ed-source').scrollTop;
}

/** `1 endpoint`, `2 endpoints`. */
function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** The template at the first free `GET /hello`, `/hello-2`, ... and a name no endpoint has. */
function fillNewEndpoint() {
  let n = 1;
  const suffix = () => (n === 1 ? '' : `-${n}`);
  while (routes.has(`GET /hello${suffix()}`) || rows.has(`hello${suffix().replace('-', '_')}`)) {
    n += 1;
  }
  $('ed-name').value = `hello${suffix().replace('-', '_')}`;
  $('ed-method').value = 'GET';
  $('ed-path').value = `/hello${suffix()}`;
  $('ed-workers').value = '1';
  $('ed-source').value = TEMPLATE;
  clearDiagnostics();
}

function newEndpoint() {
  fillNewEndpoint();
  editorTouched = false;
  $('ed-name').focus();
}

async function editEndpoint(name) {
  try {
    const [e, { source }] = await Promise.all([
      api(`endpoints/${enc(name)}`), api(`endpoints/${enc(name)}/source`)]);
    $('ed-name').value = e.name;
    $('ed-method').value = e.method;
    $('ed-path').value = e.path;
    $('ed-workers').value = String(e.options?.workers ?? 1);
    $('ed-source').value = source;
    editorTouched = true;
    clearDiagnostics();
    $('ed-status').textContent = `${e.name}: ${stateLabel(e.state)}`;
    $('ed-source').focus();
  } catch (error) {
    $('ed-status').textContent = `Cannot load ${name}: ${error.message}`;
  }
}

function clearDiagnostics() {
  $('diagnostics').replaceChildren();
  $('rendered').hidden = true;
  $('ed-status').textContent = '';
  paintGutter();
}

function selectLine(line) {
  const text = $('ed-source').value;
  const lines = text.split('\n');
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  const area = $('ed-source');
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1] || '').length);
}

function showDiagnostics(build) {
  const list = build?.diagnostics || [];
  const bad = new Set();
  $('diagnostics').replaceChildren(...list.map(d => {
    const li = document.createElement('li');
    li.dataset.level = d.level;
    li.textContent = `${d.line ? `line ${d.line}${d.column ? `:${d.column}` : ''}: ` : ''}${d.level}: ${d.message}`;
    if (d.line) {
      if (d.level === 'error') bad.add(d.line);
      li.tabIndex = 0;
      li.addEventListener('click', () => selectLine(d.line));
      li.addEventListener('keydown', ev => { if (ev.key === 'Enter') selectLine(d.line); });
    }
    return li;
  }));
  $('rendered').textContent = build?.rendered || '';
  $('rendered').hidden = !build?.rendered;
  paintGutter(bad);
}

async function deploy(event) {
  event.preventDefault();
  const name = $('ed-name').value.trim();
  const body = { method: $('ed-method').value, path: $('ed-path').value.trim(),
    source: $('ed-source').value, workers: Number($('ed-workers').value) || 1 };
  clearDiagnostics();
  editorTouched = true;
  $('ed-deploy').disabled = true;
  $('ed-status').textContent = 'building…';
  try {
    const result = await api(`endpoints/${enc(name)}?wait=1`, { method: 'PUT', body });
    const e = result.endpoint || result;
    $('ed-status').textContent = `${e.name} is ${stateLabel(e.state)}` +
      (e.live_revision ? ` (revision ${e.live_revision})` : '');
    showDiagnostics(result.build);
    $('try-method').value = body.method;
    $('try-path').value = body.path;
  } catch (error) {
    $('ed-status').textContent = error.body?.error_type === 'build_failed'
      ? 'Build failed; see the diagnostics below.' : `Deploy failed: ${error.message}`;
    showDiagnostics(error.body?.build);
  } finally {
    $('ed-deploy').disabled = false;
    refresh();
  }
}

// -- request builder ---------------------------------------------------------------------

function checkBody() {
  const text = $('try-body').value;
  let message = '';
  if (text.trim()) {
    try {
      JSON.parse(text);
    } catch (error) {
      message = `Invalid JSON: ${error.message}`;
    }
  }
  const bad = $('try-headers').value.split('\n').map(l => l.trim()).filter(l => l && !/^[\w-]+:/.test(l));
  if (bad.length) message += `${message ? '\n' : ''}Headers must look like "Name: value"`;
  $('try-check').textContent = message;
  $('try-send').disabled = Boolean(message);
  return !message;
}

async function send(event) {
  event.preventDefault();
  if (!checkBody()) return;
  const method = $('try-method').value;
  const path = '/' + $('try-path').value.trim().replace(/^\/+/, '');
  const query = $('try-query').value.trim().replace(/^\?/, '');
  const headers = Object.fromEntries($('try-headers').value.split('\n').map(l => l.trim()).filter(Boolean)
    .map(l => [l.slice(0, l.indexOf(':')).trim(), l.slice(l.indexOf(':') + 1).trim()]));
  const body = $('try-body').value.trim() && !['GET', 'HEAD'].includes(method) ? $('try-body').value : undefined;
  if (body && !Object.keys(headers).some(h => h.toLowerCase() === 'content-type')) {
    headers['Content-Type'] = 'application/json';
  }
  // Same origin: the admin listener forwards /admin/proxy/<path> to the data plane after
  // checking the admin token, which it strips (the handler never sees it); Jupyter's proxy
  // checks its own login and strips its cookie and XSRF token the same way.
  const url = `${PROXY}${path}${query ? `?${query}` : ''}`;
  const auth = JUPYTER_BASE === null ? { 'X-Edgebook-Admin-Token': token } : credentials();
  const started = performance.now();
  $('response').hidden = false;
  try {
    const response = await fetch(url, { method, headers: { ...headers, ...auth }, body });
    const text = await response.text();
    const latency = performance.now() - started;
    let pretty = text;
    try {
      pretty = JSON.stringify(JSON.parse(text), null, 2);
    } catch { /* not JSON */ }
    $('resp-status').textContent = `${response.status} ${response.statusText}`.trim();
    $('resp-status').dataset.status = String(response.status);
    $('resp-latency').textContent = ms(latency);
    $('resp-headers').textContent = [...response.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
    $('resp-body').textContent = pretty || '(empty body)';
    history = [{ method, path, query, status: response.status, latency }, ...history].slice(0, 20);
    $('history').replaceChildren(...history.map(h => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = `${h.method} ${h.path}${h.query ? `?${h.query}` : ''} → ${h.status} (${ms(h.latency)})`;
      b.addEventListener('click', () => {
        $('try-method').value = h.method;
        $('try-path').value = h.path;
        $('try-query').value = h.query;
      });
      li.append(b);
      return li;
    }));
  } catch (error) {
    $('resp-status').textContent = 'Failed';
    $('resp-status').dataset.status = '0';
    $('resp-latency').textContent = '';
    $('resp-headers').textContent = '';
    $('resp-body').textContent = error.message;
  }
}

// -- wiring ------------------------------------------------------------------------------

$('login').addEventListener('submit', event => {
  event.preventDefault();
  $('login-error').textContent = '';
  login($('token').value.trim());
});
$('logout').addEventListener('click', logout);
$('new-endpoint').addEventListener('click', newEndpoint);
$('editor').addEventListener('submit', deploy);
$('ed-source').addEventListener('input', () => paintGutter());
$('editor').addEventListener('input', () => { editorTouched = true; });
$('ed-source').addEventListener('scroll', () => { $('ed-gutter').scrollTop = $('ed-source').scrollTop; });
$('ed-source').addEventListener('keydown', event => {
  if (event.key === 'Tab' && !event.shiftKey && !event.ctrlKey && !event.altKey) {
    // Indent with four spaces; Escape then Tab leaves the editor for keyboard users.
    if (event.target.dataset.escaped === '1') {
      event.target.dataset.escaped = '';
      return;
    }
    event.preventDefault();
    event.target.setRangeText('    ', event.target.selectionStart, event.target.selectionEnd, 'end');
    paintGutter();
  } else if (event.key === 'Escape') {
    event.target.dataset.escaped = '1';
  }
});
$('try').addEventListener('submit', send);
$('try-body').addEventListener('input', checkBody);
$('try-headers').addEventListener('input', checkBody);
$('ed-source').value = TEMPLATE;
paintGutter();

if (JUPYTER_BASE !== null) {
  $('login').hidden = true;
  login('');
} else if (token) {
  login(token);
} else {
  $('token').focus();
}
