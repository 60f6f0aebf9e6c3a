// UI tests of the edgebook sidebar in a real headless Chromium against a real JupyterLab.
//
//   node tests/ui/run.mjs            (from the repository root, after `jlpm build` in labextension/)
//
// The flow: open the sidebar and see the empty state; open a notebook and see the
// %%rust_handler cell highlighted as Rust; run it and see the endpoints appear as running;
// see the panel go live on Jupyter's event bus and stop polling; send requests from the
// builder (JSON, then a CSV body with exactly the typed headers); see the endpoint's recent
// requests with their phase bars and one's waterfall; stop an endpoint from the command
// palette; focus the panel with its shortcut and start it again from the keyboard; open its
// logs from the context menu; change a setting in the settings editor and see the log view
// follow it; read its highlighted source; jump to its cell; switch to the dark theme; delete
// it with the confirmation dialog; run edgebook.request and edgebook.bench in a notebook and
// see where the time went. Screenshots go to tests/artifacts/sidebar/.
// Exits non-zero when a step fails; every step is reported either way.
//
// Environment: CHROMIUM (default /usr/bin/chromium, Debian's package), PYTHON (default the
// repository's .venv), EDGEBOOK_UI_BUILD_TIMEOUT (ms to wait for the first build, default 300000).
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { jupyterFetch, ROOT, startJupyterLab, writeNotebook } from './jupyter.mjs';

const require = createRequire(join(ROOT, 'labextension', 'package.json'));
const { chromium } = require('playwright-core');

const ARTIFACTS = join(ROOT, 'tests', 'artifacts', 'sidebar');
const BUILD_TIMEOUT = Number(process.env.EDGEBOOK_UI_BUILD_TIMEOUT || 300000);
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
];

const HANDLER_CELL = `%%rust_handler GET /hello
use rust_edge_gateway_sdk::prelude::*;

// a comment: says hello
fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello from the sidebar test", "path": req.path}))
}

handler_loop!(handle);`;

/** Answers with the headers and body it received, so the test sees what the builder sent. */
const ECHO_CELL = `%%rust_handler POST /echo
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"headers": req.headers, "body": req.body}))
}

handler_loop!(handle);`;

/** A handler, then the same route with a typo on line 7 of the cell (`req.pathx`). */
const LATER_CELL = `%%rust_handler GET /later
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({
        "message": "later",
        "path": req.path,
    }))
}

handler_loop!(handle);`;
const BROKEN_LATER_CELL = LATER_CELL.replace('"path": req.path,', '"path": req.pathx,');
const LATER = 'get_later';

/** Milliseconds between listings while polling; short, so a poll would show in a 3 s window. */
const POLL_INTERVAL = 500;

/** The default name of a `GET /hello` cell's endpoint. */
const NAME = 'get_hello';
const ECHO = 'post_echo';

const results = [];
let currentPage = null;
let failed = 0;

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, ms: Date.now() - started });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed += 1;
    results.push({ name, ok: false, error });
    let shown = '';
    if (currentPage) {
      await currentPage.screenshot({ path: join(ARTIFACTS, 'failure.png') }).catch(() => undefined);
      shown = await describeNotebook(currentPage).catch(error => `(could not read the page: ${error})`);
    }
    console.log(`FAIL ${name}\n     ${String(error?.stack || error).split('\n').slice(0, 6).join('\n     ')}`);
    if (shown) {
      console.log(`     the notebook on show:\n${shown}`);
    }
    throw Object.assign(error instanceof Error ? error : new Error(String(error)), { reported: true });
  }
}

/**
 * What a failure report needs from the notebook on show: its name, its kernel's state and what
 * each code cell printed (a step that waits for an output otherwise says only "timeout").
 */
async function describeNotebook(page) {
  const panel = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden)').first();
  if ((await panel.count()) === 0) {
    return '       (no notebook on show)';
  }
  return panel.evaluate(node => {
    const lines = [];
    const tab = document.querySelector('.lm-DockPanel .lm-TabBar-tab.lm-mod-current');
    lines.push(`tab: ${tab ? tab.textContent : '?'}`);
    const indicator = node.querySelector('.jp-Notebook-ExecutionIndicator');
    lines.push(`kernel: ${indicator ? indicator.dataset.status : '?'}`);
    node.querySelectorAll('.jp-CodeCell').forEach((cell, index) => {
      const prompt = cell.querySelector('.jp-InputPrompt');
      const output = cell.querySelector('.jp-OutputArea');
      const text = (output ? output.textContent : '').replace(/\s+/g, ' ').trim().slice(0, 600);
      lines.push(`cell ${index} ${prompt ? prompt.textContent.trim() : ''} ${text || '(no output)'}`);
    });
    return lines.map(line => `       ${line}`).join('\n');
  });
}

/**
 * Runs every cell of the notebook on show, once its kernel is idle: a run issued while
 * JupyterLab is still creating the notebook's session finds "no kernel" and is dropped.
 */
async function runAllCells(page) {
  // The status bar names the current notebook's kernel once its session has one ("No Kernel"
  // before); the toolbar's indicator says "idle" from the start, so it cannot tell.
  await page.locator('.jp-StatusBar-TextItem', { hasText: /Python 3 \(ipykernel\) \| Idle/ }).first()
    .waitFor({ timeout: 120000 });
  const panel = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden)').first();
  await panel.locator('.jp-Notebook .jp-CodeCell').first().click();
  await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Run$/ }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: /^Run All Cells$/ }).click();
}

function expect(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/** Console messages a stock JupyterLab prints that say nothing about this extension. */
function isUnrelatedNoise(text) {
  return (
    // The browser asks for a favicon JupyterLab does not serve at that path.
    /favicon/i.test(text) ||
    // Chromium's own complaint when a page has no manifest icons, etc.
    /Manifest:/.test(text)
  );
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  rmSync(join(ARTIFACTS, 'failure.png'), { force: true });
  const server = await startJupyterLab({ serverExtensions: { edgebook: true } });
  const profile = mkdtempSync(join(server.work, 'chromium-'));
  let context = null;
  const consoleErrors = [];
  try {
    writeNotebook(join(server.project, 'hello.ipynb'), [
      '%load_ext edgebook',
      HANDLER_CELL,
      'print("after the handler")',
      ECHO_CELL
    ]);
    writeNotebook(join(server.project, 'broken.ipynb'), ['%load_ext edgebook', LATER_CELL, BROKEN_LATER_CELL]);
    await jupyterFetch(server, 'lab/api/settings/@edgebook/labextension:sidebar', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ raw: JSON.stringify({ pollInterval: POLL_INTERVAL }) })
    });
    // No news prompt in a test run (settings live in the temporary config dir).
    await jupyterFetch(server, 'lab/api/settings/@jupyterlab/apputils-extension:notification', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ raw: '{"fetchNews": "false", "checkForUpdates": false}' })
    });

    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 900 }
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(30000);
    currentPage = page;
    const sidebar = page.locator('#edgebook-sidebar');
    page.on('console', msg => {
      if (msg.type() === 'error' && !isUnrelatedNoise(msg.text())) {
        const where = msg.location()?.url;
        consoleErrors.push(where ? `${msg.text()} [${where}]` : msg.text());
      }
    });
    page.on('pageerror', error => consoleErrors.push(`pageerror: ${error.message}`));
    // Every endpoint listing the page asks for, to see when it polls.
    const listings = [];
    page.on('request', request => {
      if (request.method() === 'GET' && /\/edgebook\/api\/endpoints(\?|$)/.test(request.url())) {
        listings.push(Date.now());
      }
    });
    const builder = sidebar.locator('.eb-Builder');
    const headersBox = builder.getByLabel(/^Headers/);
    const bodyBox = builder.getByLabel(/^Body$/);
    // Only loopback traffic: refuse anything else the page might try.
    await context.route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, route => route.abort());

    const openSidebar = async () => {
      if (!(await sidebar.isVisible())) {
        await page.locator('.jp-SideBar [data-id="edgebook-sidebar"]').click();
      }
      await sidebar.waitFor({ state: 'visible' });
    };
    const row = sidebar.locator(`li.eb-Endpoint[data-name="${NAME}"]`);

    await step('JupyterLab loads with the edgebook sidebar tab', async () => {
      await page.goto(`${server.url}lab?token=${server.token}`);
      await page.locator('.jp-LabShell').waitFor();
      await page.locator('.jp-SideBar [data-id="edgebook-sidebar"]').waitFor();
    });

    await step('the sidebar opens and shows the empty state with the example cell', async () => {
      await openSidebar();
      await sidebar.locator('.eb-Empty').waitFor({ state: 'visible' });
      const snippet = await sidebar.locator('.eb-Snippet').textContent();
      expect(snippet.startsWith('%%rust_handler GET /hello'), `snippet: ${snippet}`);
      await sidebar.locator('.eb-Connection', { hasText: /live|polling/ }).waitFor();
      expect(!(await sidebar.locator('.eb-Banner').isVisible()), 'an error banner is shown');
      await sidebar.screenshot({ path: join(ARTIFACTS, '01-empty-state.png') });
    });

    await step('a %%rust_handler cell is highlighted as Rust', async () => {
      await page.goto(`${server.url}lab/tree/hello.ipynb?token=${server.token}`);
      const cell = page.locator('.jp-Notebook .jp-CodeCell').nth(1);
      await cell.locator('.cm-content').waitFor();
      const comment = cell.locator('.cm-line span', { hasText: /^\/\/ a comment: says hello$/ });
      await comment.waitFor();
      const magic = cell.locator('.cm-line span', { hasText: /^%%rust_handler$/ });
      await magic.waitFor();
      const styles = await cell.evaluate(node => {
        const color = el => (el ? getComputedStyle(el).color : null);
        const spans = [...node.querySelectorAll('.cm-line span')];
        const fn = spans.find(s => s.textContent === 'fn');
        const text = node.querySelector('.cm-content');
        return { fn: color(fn), text: color(text) };
      });
      expect(styles.fn && styles.fn !== styles.text, `fn is not highlighted as a keyword: ${JSON.stringify(styles)}`);
      // The Python cell next to it keeps Python highlighting.
      const python = page.locator('.jp-Notebook .jp-CodeCell').nth(2);
      await python.locator('.cm-line span', { hasText: /^print$/ }).waitFor();
      await cell.screenshot({ path: join(ARTIFACTS, '02-rust-highlighting.png') });
    });

    await step('running the cells deploys the endpoints, shown as running in the sidebar', async () => {
      await runAllCells(page);
      await openSidebar();
      await row.waitFor({ timeout: BUILD_TIMEOUT });
      await sidebar.locator(`li.eb-Endpoint[data-name="${NAME}"][data-state="running"]`).waitFor({ timeout: BUILD_TIMEOUT });
      await sidebar.locator(`li.eb-Endpoint[data-name="${ECHO}"][data-state="running"]`).waitFor({ timeout: BUILD_TIMEOUT });
      expect((await row.locator('.eb-Method').textContent()) === 'GET', 'method');
      expect((await row.locator('.eb-Path').textContent()) === '/hello', 'path');
      expect((await row.locator('.eb-State').textContent()) === 'running', 'state text');
      await row.locator('[data-stat="revision"]', { hasText: /^rev \d+$/ }).waitFor();
      await row.locator('[data-stat="workers"]', { hasText: /^\d+ workers?$/ }).waitFor();
      expect(await sidebar.locator('.eb-Empty').isHidden(), 'the empty state is still shown');
      await row.evaluate(node => {
        node.dataset.testMark = 'original';
      });
      await sidebar.screenshot({ path: join(ARTIFACTS, '03-running.png') });
    });

    await step('the toolbar opens the admin page through Jupyter, asking for no token', async () => {
      const [admin] = await Promise.all([
        context.waitForEvent('page'),
        sidebar.locator('.jp-ToolbarButtonComponent[data-command="edgebook:open-admin"]').click()
      ]);
      admin.on('console', msg => {
        if (msg.type() === 'error') {
          consoleErrors.push(`admin page: ${msg.text()} [${msg.location()?.url}]`);
        }
      });
      await admin.waitForLoadState();
      expect(new URL(admin.url()).pathname.endsWith('/edgebook/admin/'), `opened ${admin.url()}`);
      expect(!admin.url().includes('token='), `the admin page URL carries a token: ${admin.url()}`);
      await admin.locator('#app').waitFor({ state: 'visible' });
      expect(await admin.locator('#login').isHidden(), 'the page asks for the admin token');
      await admin.locator('#gateway', { hasText: 'through Jupyter' }).waitFor();
      await admin.locator(`#endpoints tr[data-name="${NAME}"][data-state="running"]`).waitFor();
      await admin.locator('#endpoint-count', { hasText: /^2 endpoints, 2 running$/ }).waitFor();
      // An unsafe call through Jupyter's proxy: the page sends Jupyter's XSRF token.
      await admin.locator('#try-method').selectOption('POST');
      await admin.locator('#try-path').fill('/echo');
      await admin.locator('#try-body').fill('{"from": "the admin page"}');
      await admin.getByRole('button', { name: 'Send' }).click();
      await admin.locator('#resp-status[data-status="200"]').waitFor();
      expect((await admin.locator('#resp-body').textContent()).includes('the admin page'), 'echo body');
      await admin.screenshot({ path: join(ARTIFACTS, '12-admin-page-through-jupyter.png'), fullPage: true });
      await admin.close();
    });

    await step('events flow over the event bus and the panel stops polling', async () => {
      await sidebar.locator('.eb-Connection[data-status="live"]').waitFor({ timeout: 20000 });
      const before = listings.length;
      // A measuring window, not a wait for something: with a 500 ms poll it would see ~6.
      await page.waitForTimeout(3000);
      const during = listings.length - before;
      expect(during === 0, `${during} listings in 3 s while events flow (poll interval ${POLL_INTERVAL} ms)`);
      expect(await sidebar.locator('.eb-Connection[data-status="live"]').isVisible(), 'no longer live');
    });

    await step('the request builder sends GET /hello through the proxy: 200 and the body', async () => {
      await row.getByRole('button', { exact: true, name: `Try ${NAME} in the request builder` }).click();
      expect((await builder.locator('.eb-PathInput').inputValue()) === '/hello', 'path not filled in');
      await builder.getByRole('button', { exact: true, name: 'Send' }).click();
      await builder.locator('.eb-Response .eb-Status[data-status="200"]').waitFor();
      const body = await builder.locator('.eb-ResponseBody').textContent();
      expect(body.includes('"message": "Hello from the sidebar test"'), `body: ${body}`);
      expect(/\d/.test(await builder.locator('.eb-Response .eb-Latency').textContent()), 'latency');
      await builder.locator('.eb-History .eb-HistoryItem', { hasText: '/hello' }).waitFor({ state: 'attached' });
      await sidebar.screenshot({ path: join(ARTIFACTS, '04-request-200.png') });
    });

    await step('metrics update in place: the same row node now counts the request', async () => {
      await row.locator('[data-stat="requests"]', { hasText: /^[1-9][\d,.\s]* req$/ }).waitFor();
      await row.locator('[data-stat="p50"]', { hasText: /ms|s$/ }).waitFor();
      expect((await row.getAttribute('data-test-mark')) === 'original', 'the row was rebuilt instead of patched');
    });

    await step('recent requests lists the served requests with their phases; a click shows the waterfall', async () => {
      await row.getByRole('button', { exact: true, name: `Recent requests to ${NAME}` }).click();
      const view = page.locator('.eb-RequestsView');
      const item = view.locator('button.eb-RequestItem', { hasText: '/hello' }).first();
      await item.waitFor();
      expect((await item.locator('.eb-Status').textContent()) === '200', 'status');
      expect(/\d/.test(await item.locator('.eb-Latency').textContent()), 'total ms');
      const phases = await item.locator('.eb-TimingBar .eb-Phase').evaluateAll(nodes => nodes.map(n => n.dataset.kind));
      expect(phases.join(',') === 'route,recv,queue,worker', `phases in the bar: ${phases}`);
      expect(/worker \d/.test(await item.locator('.eb-TimingBar').getAttribute('aria-label')), 'bar label');
      await item.click();
      expect((await item.getAttribute('aria-pressed')) === 'true', 'not pressed');
      const waterfall = view.locator('.eb-RequestDetail .eb-Waterfall');
      await waterfall.locator('tbody tr[data-kind="worker"]').waitFor();
      const steps = await waterfall.locator('tbody tr th').allTextContents();
      for (const name of ['route', 'recv', 'queue', 'worker']) {
        expect(steps.includes(name), `no ${name} row in the waterfall: ${steps}`);
      }
      const width = await waterfall.locator('tr[data-kind="worker"] .eb-Phase').evaluate(n => n.getBoundingClientRect().width);
      expect(width > 0, 'the worker bar has no width');
      expect(/ms$/.test(await waterfall.locator('tr[data-kind="worker"] td').nth(1).textContent()), 'worker ms');
      await page.locator('.eb-RequestsView').screenshot({ path: join(ARTIFACTS, '15-recent-requests.png') });
      await page
        .locator('.lm-TabBar-tab', { hasText: `Requests: ${NAME}` })
        .first()
        .locator('.lm-TabBar-tabCloseIcon')
        .click();
      await view.waitFor({ state: 'detached' });
    });

    await step('with a JSON content type, an invalid JSON body is reported and blocks sending', async () => {
      await headersBox.fill('Content-Type: application/json');
      await bodyBox.fill('{"a": }');
      await builder.locator('.eb-FieldNote', { hasText: /^Invalid JSON: line 1, column/ }).waitFor();
      expect(await builder.getByRole('button', { exact: true, name: 'Send' }).isDisabled(), 'Send is enabled');
    });

    await step('a CSV body reaches the handler with exactly the typed headers', async () => {
      await builder.locator('select').selectOption('POST');
      await builder.locator('.eb-PathInput').fill('/echo');
      const csv = 'name,count\nalpha,1\nbeta,2\n';
      await headersBox.fill('Content-Type: text/csv\nX-Sample: typed\nAuthorization: Bearer sample-token');
      await bodyBox.fill(csv);
      await builder.locator('.eb-Warning', { hasText: /Authorization goes to your endpoint only/ }).waitFor();
      expect(!(await builder.getByRole('button', { exact: true, name: 'Send' }).isDisabled()), 'Send is disabled for CSV');
      await builder.getByRole('button', { exact: true, name: 'Send' }).click();
      // The earlier GET's 200 is still on screen until this response replaces it.
      await builder.locator('.eb-ResponseBody', { hasText: 'name,count' }).waitFor();
      await builder.locator('.eb-Response .eb-Status[data-status="200"]').waitFor();
      const echoed = JSON.parse(await builder.locator('.eb-ResponseBody').textContent());
      expect(echoed.body === csv, `body: ${JSON.stringify(echoed.body)}`);
      const h = echoed.headers;
      expect(h['content-type'] === 'text/csv', `content-type: ${h['content-type']}`);
      expect(h['x-sample'] === 'typed', `x-sample: ${h['x-sample']}`);
      expect(h.authorization === 'Bearer sample-token', `authorization: ${h.authorization}`);
      for (const name of ['cookie', 'x-xsrftoken', 'origin', 'referer', 'user-agent', 'x-edgebook-request-headers']) {
        expect(!(name in h), `the handler saw ${name}: ${h[name]}`);
      }
      await builder.locator('.eb-BuilderForm').screenshot({ path: join(ARTIFACTS, '08-non-json-request-form.png') });
      await builder.locator('.eb-ResponseHeaders summary').click();
      await builder.locator('.eb-Response').scrollIntoViewIfNeeded();
      await builder.locator('.eb-Response').screenshot({ path: join(ARTIFACTS, '08-non-json-request-response.png') });
      await builder.locator('.eb-ResponseHeaders summary').click();
      // Without a Content-Type, none is invented; what the proxy will not forward, it names.
      await headersBox.fill('X-Sample: none\nHost: elsewhere.example');
      await bodyBox.fill('plain words');
      await builder.getByRole('button', { exact: true, name: 'Send' }).click();
      await builder.locator('.eb-ResponseBody', { hasText: 'plain words' }).waitFor();
      const plain = JSON.parse(await builder.locator('.eb-ResponseBody').textContent());
      expect(!('content-type' in plain.headers), `content-type invented: ${plain.headers['content-type']}`);
      expect(plain.headers.host !== 'elsewhere.example', 'the typed Host was forwarded');
      await builder.locator('.eb-Dropped', { hasText: 'The proxy did not forward: Host' }).waitFor();
      await headersBox.fill('');
      await bodyBox.fill('');
    });

    await step('stop from the command palette: the state changes to stopped and the proxy answers 503', async () => {
      await page.keyboard.press('Control+Shift+C');
      const palette = page.locator('#command-palette');
      await palette.locator('input').fill('Edgebook');
      await palette.locator('.lm-CommandPalette-item', { hasText: 'Copy Endpoint as curl' }).first().waitFor();
      await page.screenshot({ path: join(ARTIFACTS, '09-palette.png') });
      await palette.locator('input').fill('Stop Endpoint');
      await palette.locator('.lm-CommandPalette-item', { hasText: 'Stop Endpoint' }).first().waitFor();
      await page.keyboard.press('Enter');
      // Two endpoints: the command asks which, offering the row last used first.
      const dialog = page.locator('.jp-Dialog');
      await dialog.waitFor();
      await dialog.locator('select').selectOption(NAME);
      await dialog.getByRole('button', { name: /^(OK|Ok)$/ }).click();
      await sidebar.locator(`li.eb-Endpoint[data-name="${NAME}"][data-state="stopped"]`).waitFor();
      expect((await row.locator('.eb-State').textContent()) === 'stopped', 'state text');
      expect((await row.locator('.eb-State').getAttribute('data-tone')) === 'idle', 'tone');
      await row.getByRole('button', { exact: true, name: `Try ${NAME} in the request builder` }).click();
      await builder.getByRole('button', { exact: true, name: 'Send' }).click();
      await builder.locator('.eb-Response .eb-Status[data-status="503"]').waitFor();
      await sidebar.screenshot({ path: join(ARTIFACTS, '05-stopped.png') });
    });

    await step('the shortcut focuses the panel; arrow keys move in a row toolbar; Enter starts', async () => {
      await page.locator('.jp-Notebook .jp-CodeCell').first().click();
      await page.keyboard.press('Control+Shift+Y');
      await page.waitForFunction(() => document.querySelector('#edgebook-sidebar').contains(document.activeElement));
      const actions = row.locator('.eb-Actions');
      expect((await actions.locator('button[tabindex="0"]').count()) === 1, 'a row toolbar has more than one tab stop');
      await actions.locator('button[tabindex="0"]').focus();
      await page.keyboard.press('End');
      let focused = await page.evaluate(() => document.activeElement?.getAttribute('aria-label'));
      expect(focused === `Delete ${NAME}`, `End focused ${focused}`);
      await page.keyboard.press('Home');
      focused = await page.evaluate(() => document.activeElement?.getAttribute('aria-label'));
      expect(focused === `Start ${NAME}`, `Home focused ${focused}`);
      await page.keyboard.press('ArrowRight');
      focused = await page.evaluate(() => document.activeElement?.getAttribute('aria-label'));
      expect(focused !== `Start ${NAME}`, 'ArrowRight did not move');
      await page.keyboard.press('ArrowLeft');
      await page.keyboard.press('Enter');
      await sidebar.locator(`li.eb-Endpoint[data-name="${NAME}"][data-state="running"]`).waitFor({ timeout: BUILD_TIMEOUT });
      await sidebar.locator('.eb-VisuallyHidden[role="status"]', { hasText: `${NAME} is running` }).waitFor({ state: 'attached' });
    });

    await step('the context menu opens the logs in the main area', async () => {
      await row.locator('.eb-Name').click({ button: 'right' });
      const menu = page.locator('.lm-Menu.jp-ThemedContainer, .lm-Menu').last();
      await menu.locator('.lm-Menu-itemLabel', { hasText: /^Restart$/ }).waitFor();
      await menu.screenshot({ path: join(ARTIFACTS, '11-context-menu.png') });
      await menu.locator('.lm-Menu-itemLabel', { hasText: /^Open Logs$/ }).click();
      await page.locator('.eb-LogView .eb-Log').waitFor();
      await page.locator('.eb-LogView .eb-Log', { hasText: 'is serving' }).waitFor();
      await page.locator('.eb-LogView').screenshot({ path: join(ARTIFACTS, '06-logs.png') });
    });

    await step('a setting changed in the settings editor applies live (log lines)', async () => {
      const lines = async () => ((await page.locator('.eb-LogView .eb-Log').textContent()) || '').split('\n').length;
      expect((await lines()) > 2, `the log has only ${await lines()} lines`);
      await page.keyboard.press('Control+Shift+C');
      await page.locator('#command-palette input').fill('Settings Editor');
      await page.locator('#command-palette .lm-CommandPalette-item', { hasText: /^Settings Editor$/ }).first().click();
      const editor = page.locator('.jp-SettingsPanel, .jp-SettingsEditor').first();
      await editor.waitFor();
      await page.locator('.jp-PluginList-entry', { hasText: 'Edgebook' }).first().click();
      const field = page.locator('input[id$="logTail"]').first();
      await field.waitFor();
      await field.fill('2');
      await field.press('Tab');
      await page.screenshot({ path: join(ARTIFACTS, '10-settings-editor.png') });
      await page.locator('.lm-TabBar-tab', { hasText: `Logs: ${NAME}` }).first().click();
      await page.waitForFunction(
        () => (document.querySelector('.eb-LogView .eb-Log')?.textContent || '').split('\n').length <= 2,
        null,
        { timeout: 15000 }
      );
    });

    await step('source opens with the handler code, highlighted as Rust', async () => {
      await row.getByRole('button', { exact: true, name: `Source of ${NAME}` }).click();
      const source = page.locator('.eb-SourceView .eb-Source[data-highlighted="rust"]', { hasText: 'fn handle(req: Request)' });
      await source.waitFor();
      const colours = await source.evaluate(node => {
        const spans = [...node.querySelectorAll('span')];
        const fn = spans.find(s => s.textContent === 'fn');
        return { fn: fn ? getComputedStyle(fn).color : null, text: getComputedStyle(node).color };
      });
      expect(colours.fn && colours.fn !== colours.text, `fn is not highlighted: ${JSON.stringify(colours)}`);
    });

    await step('the origin link jumps to the handler cell', async () => {
      await page.locator('.lm-TabBar-tab', { hasText: 'hello.ipynb' }).first().click();
      await page.locator('.jp-Notebook .jp-CodeCell').nth(2).click();
      await openSidebar();
      const origin = row.locator('.eb-Origin');
      await origin.waitFor({ state: 'visible' });
      await origin.click();
      await page.locator('.jp-Notebook .jp-Cell.jp-mod-active .cm-content', { hasText: '%%rust_handler GET /hello' }).waitFor();
    });

    await step('when the gateway restarts, the panel polls, then resyncs once events flow again', async () => {
      const pid = Number(/started it \(pid (\d+)\)/.exec(server.log())?.[1]);
      expect(pid > 0, 'no gateway pid in the server log');
      const errorsBefore = consoleErrors.length;
      process.kill(pid, 'SIGTERM');
      await sidebar.locator('.eb-Connection:is([data-status="polling"], [data-status="offline"])').waitFor({ timeout: 20000 });
      await sidebar.locator('.eb-Connection[data-status="live"]').waitFor({ timeout: 60000 });
      await sidebar.locator(`li.eb-Endpoint[data-name="${NAME}"][data-state="running"]`).waitFor({ timeout: BUILD_TIMEOUT });
      // Listings that failed while no gateway answered are expected here, and only those.
      const during = consoleErrors.splice(errorsBefore);
      const other = during.filter(text => !/status of 50[23] .*\/edgebook\/api\//.test(text));
      consoleErrors.push(...other);
    });

    await step('the dark theme restyles the panel through JupyterLab variables', async () => {
      const before = await sidebar.evaluate(node => getComputedStyle(node).backgroundColor);
      await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Settings$/ }).click();
      await page.locator('.lm-Menu-itemLabel', { hasText: /^Theme$/ }).hover();
      await page.locator('.lm-Menu-itemLabel', { hasText: /^JupyterLab Dark$/ }).click();
      await page.waitForFunction(() => document.body.dataset.jpThemeLight === 'false');
      await page.waitForFunction(
        previous => getComputedStyle(document.querySelector('#edgebook-sidebar')).backgroundColor !== previous,
        before
      );
      await openSidebar();
      await sidebar.screenshot({ path: join(ARTIFACTS, '07-dark-theme.png') });
    });

    await step('delete asks for confirmation, then the row goes and its log view says so', async () => {
      await row.getByRole('button', { exact: true, name: `Delete ${NAME}` }).click();
      const dialog = page.locator('.jp-Dialog');
      await dialog.waitFor();
      expect((await dialog.textContent()).includes(`Delete ${NAME}?`), 'dialog title');
      await dialog.getByRole('button', { exact: true, name: 'Cancel' }).click();
      await dialog.waitFor({ state: 'detached' });
      expect(await row.isVisible(), 'cancel deleted the endpoint');
      await row.getByRole('button', { exact: true, name: `Delete ${NAME}` }).click();
      await page.locator('.jp-Dialog').getByRole('button', { exact: true, name: 'Delete' }).click();
      await row.waitFor({ state: 'detached' });
      await page.locator('.eb-LogView .eb-FieldNote', { hasText: `${NAME} no longer exists` }).waitFor({ state: 'attached' });
    });

    await step('a failing cell marks the offending line in its editor; the endpoint stays green with a warning', async () => {
      await page.goto(`${server.url}lab/tree/broken.ipynb?token=${server.token}`);
      // hello.ipynb comes back too, in a hidden tab: look only at the notebook on show.
      const cells = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell');
      await page.locator('.lm-TabBar-tab.lm-mod-current', { hasText: 'broken.ipynb' }).first().waitFor();
      await cells.nth(2).locator('.cm-content').waitFor();
      await runAllCells(page);
      const broken = cells.nth(2);
      const mark = broken.locator('.cm-lintRange-error');
      await mark.first().waitFor({ timeout: BUILD_TIMEOUT });
      expect((await mark.first().textContent()) === 'pathx', `marked: ${await mark.first().textContent()}`);
      const line = broken.locator('.cm-line', { has: page.locator('.cm-lintRange-error') }).first();
      expect((await line.textContent()).includes('"path": req.pathx,'), 'the mark is not on the offending line');
      await broken.locator('.cm-gutter-lint .cm-lint-marker-error').first().waitFor();
      const output = broken.locator('.jp-OutputArea');
      await output.locator('[data-state="running_build_failed"]', { hasText: 'running, latest build failed' }).waitFor();
      const said = ((await output.textContent()).match(/did not compile/g) || []).length;
      expect(said === 1, `the build-failed message appears ${said} times`);
      expect((await output.locator('.jp-OutputArea-output progress, .widget-progress').count()) === 0, 'a progress bar stayed');
      await mark.first().hover();
      await page.locator('.cm-tooltip-lint', { hasText: 'no field `pathx`' }).waitFor();
      // The page, clipped to the cell: the hover tooltip may reach past the cell's box.
      const box = await broken.boundingBox();
      await page.screenshot({
        path: join(ARTIFACTS, '13-cell-diagnostics.png'),
        clip: { x: box.x, y: Math.max(box.y - 40, 0), width: box.width, height: Math.min(box.height + 40, 560) }
      });
      await openSidebar();
      const later = sidebar.locator(`li.eb-Endpoint[data-name="${LATER}"][data-state="running_build_failed"]`);
      await later.waitFor();
      expect((await later.locator('.eb-State').textContent()) === 'running, latest build failed', 'sidebar words');
      expect((await later.locator('.eb-State').getAttribute('data-tone')) === 'ok', 'not green');
      await later.locator('.eb-Reason[data-tone="warn"]').waitFor();
      expect(!(await later.getByRole('button', { exact: true, name: `Stop ${LATER}` }).isDisabled()), 'Stop is disabled');
      await later.screenshot({ path: join(ARTIFACTS, '14-running-latest-build-failed.png') });
      // Editing the cell clears the marks: they describe the source that was built.
      await line.click();
      await page.keyboard.press('End');
      await page.keyboard.type(' ');
      await mark.first().waitFor({ state: 'detached' });
    });

    await step('a demo notebook opens unmodified, and the quick start links to the others', async () => {
      for (const name of ['01-quick-start.ipynb', '02-json-api.ipynb']) {
        copyFileSync(join(ROOT, 'notebooks', name), join(server.project, name));
      }
      await page.goto(`${server.url}lab/tree/01-quick-start.ipynb?token=${server.token}`);
      const tab = page.locator('.lm-TabBar-tab.lm-mod-current', { hasText: '01-quick-start.ipynb' }).first();
      await tab.waitFor();
      // JupyterLab writes the kernel's info into the notebook once the kernel is up.
      await page.locator('.jp-StatusBar-TextItem', { hasText: /Python 3 \(ipykernel\) \| Idle/ }).first().waitFor();
      await page.waitForTimeout(1000); // a measuring window: a change would show by now
      expect(!(await tab.evaluate(node => node.classList.contains('jp-mod-dirty'))), 'the notebook opened modified');
      // JupyterLab resolves a relative link and opens it in the app, not as a download.
      const link = page
        .locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedMarkdown a', { hasText: '02-json-api.ipynb' })
        .first();
      await link.scrollIntoViewIfNeeded();
      await link.click();
      await page.locator('.lm-TabBar-tab.lm-mod-current', { hasText: '02-json-api.ipynb' }).first().waitFor();
    });

    await step('a notebook request shows its waterfall under the response', async () => {
      // The endpoint still serving at this point: /later runs its last good build.
      writeNotebook(join(server.project, 'timing.ipynb'), [
        'import edgebook',
        'r = edgebook.request("GET", "/later"); r',
        'edgebook.bench("GET", "/later", duration=1, concurrency=2)'
      ]);
      await page.goto(`${server.url}lab/tree/timing.ipynb?token=${server.token}`);
      await page.locator('.lm-TabBar-tab.lm-mod-current', { hasText: 'timing.ipynb' }).first().waitFor();
      const cells = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell');
      await cells.nth(2).locator('.cm-content').waitFor();
      await runAllCells(page);
      const response = cells.nth(1).locator('.jp-OutputArea');
      await response.locator('.edgebook-response').waitFor({ timeout: 120000 });
      const text = await response.textContent();
      expect(text.includes('where the time went'), `no waterfall under the response: ${text.slice(0, 400)}`);
      expect(/worker/.test(text), 'no worker phase in the waterfall');
      await response.scrollIntoViewIfNeeded();
      await response.screenshot({ path: join(ARTIFACTS, '16-waterfall-in-notebook.png') });
    });

    await step('a notebook bench shows where the time went by percentile, with its plot', async () => {
      const cells = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell');
      const output = cells.nth(2).locator('.jp-OutputArea');
      const breakdown = output.locator('details', { hasText: 'where the time went' });
      await breakdown.waitFor({ timeout: 120000 });
      expect((await breakdown.locator('table').count()) >= 1, 'no breakdown table');
      await breakdown.locator('img').waitFor();
      const text = await output.textContent();
      expect(text.includes('where the time went'), 'the bench output does not say where the time went');
      await output.scrollIntoViewIfNeeded();
      await output.screenshot({ path: join(ARTIFACTS, '17-bench-breakdown.png') });
    });

    await step('no console errors', async () => {
      // The one failed load the flow causes on purpose: the request to the stopped endpoint.
      const unexpected = consoleErrors.filter(
        text => !/status of 503 .*\/edgebook\/proxy\/hello\b/.test(text)
      );
      expect(unexpected.length === 0, `console errors:\n${unexpected.join('\n')}`);
    });
  } finally {
    if (context) {
      await context.close();
    }
    await server.stop();
    if (failed) {
      console.log(`\nJupyterLab output (last 4000 characters):\n${server.log().slice(-4000)}`);
    }
    rmSync(server.work, { recursive: true, force: true });
  }
}

main()
  .catch(error => {
    if (!error?.reported) {
      failed += 1;
      console.log(`FAIL setup\n     ${String(error?.stack || error)}`);
    }
  })
  .finally(() => {
    const passed = results.filter(r => r.ok).length;
    console.log(`\n${passed} passed, ${failed} failed; screenshots in ${ARTIFACTS}`);
    process.exit(failed || passed === 0 ? 1 : 0);
  });
