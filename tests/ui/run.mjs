// UI tests of the edgebook sidebar in a real headless Chromium against a real JupyterLab.
//
//   node tests/ui/run.mjs            (from the repository root, after `jlpm build` in labextension/)
//
// The flow: open the sidebar and see the empty state; open a notebook and see the
// %%rust_handler cell highlighted as Rust; run it and see the endpoint appear as running;
// send a request from the builder and see 200 and the body; stop it and see the state change;
// start it again from the keyboard; read its logs; jump to its cell; switch to the dark
// theme; delete it with the confirmation dialog. Screenshots go to tests/artifacts/sidebar/.
// Exits non-zero when a step fails; every step is reported either way.
//
// Environment: CHROMIUM (default /usr/bin/chromium, Debian's package), PYTHON (default the
// repository's .venv), EDGEBOOK_UI_BUILD_TIMEOUT (ms to wait for the first build, default 300000).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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

/** The default name of a `GET /hello` cell's endpoint. */
const NAME = 'get_hello';

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
    if (currentPage) {
      await currentPage.screenshot({ path: join(ARTIFACTS, 'failure.png') }).catch(() => undefined);
    }
    console.log(`FAIL ${name}\n     ${String(error?.stack || error).split('\n').slice(0, 6).join('\n     ')}`);
    throw Object.assign(error instanceof Error ? error : new Error(String(error)), { reported: true });
  }
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
      'print("after the handler")'
    ]);
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
    page.on('console', msg => {
      if (msg.type() === 'error' && !isUnrelatedNoise(msg.text())) {
        const where = msg.location()?.url;
        consoleErrors.push(where ? `${msg.text()} [${where}]` : msg.text());
      }
    });
    page.on('pageerror', error => consoleErrors.push(`pageerror: ${error.message}`));
    // Only loopback traffic: refuse anything else the page might try.
    await context.route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, route => route.abort());

    const sidebar = page.locator('#edgebook-sidebar');
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

    await step('running the cell deploys the endpoint, shown as running in the sidebar', async () => {
      await page.locator('.jp-Notebook .jp-CodeCell').first().click();
      await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Run$/ }).click();
      await page.locator('.lm-Menu-itemLabel', { hasText: /^Run All Cells$/ }).click();
      await openSidebar();
      await row.waitFor({ timeout: BUILD_TIMEOUT });
      await sidebar.locator(`li.eb-Endpoint[data-name="${NAME}"][data-state="running"]`).waitFor({ timeout: BUILD_TIMEOUT });
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

    await step('the request builder sends GET /hello through the proxy: 200 and the body', async () => {
      await row.getByRole('button', { exact: true, name: `Try ${NAME} in the request builder` }).click();
      const builder = sidebar.locator('.eb-Builder');
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
      await row.locator('[data-stat="requests"]', { hasText: /^[1-9][\d,]* req$/ }).waitFor();
      await row.locator('[data-stat="p50"]', { hasText: /ms|s$/ }).waitFor();
      expect((await row.getAttribute('data-test-mark')) === 'original', 'the row was rebuilt instead of patched');
    });

    await step('an invalid JSON body is reported and blocks sending', async () => {
      const builder = sidebar.locator('.eb-Builder');
      await builder.locator('textarea').nth(1).fill('{"a": }');
      await builder.locator('.eb-FieldNote', { hasText: /^Invalid JSON: line 1, column/ }).waitFor();
      expect(await builder.getByRole('button', { exact: true, name: 'Send' }).isDisabled(), 'Send is enabled');
      await builder.locator('textarea').nth(1).fill('');
    });

    await step('stop: the state changes to stopped and the proxy answers 503', async () => {
      await row.getByRole('button', { exact: true, name: `Stop ${NAME}` }).click();
      await sidebar.locator(`li.eb-Endpoint[data-name="${NAME}"][data-state="stopped"]`).waitFor();
      expect((await row.locator('.eb-State').textContent()) === 'stopped', 'state text');
      expect((await row.locator('.eb-State').getAttribute('data-tone')) === 'idle', 'tone');
      const builder = sidebar.locator('.eb-Builder');
      await builder.getByRole('button', { exact: true, name: 'Send' }).click();
      await builder.locator('.eb-Response .eb-Status[data-status="503"]').waitFor();
      await sidebar.screenshot({ path: join(ARTIFACTS, '05-stopped.png') });
    });

    await step('start again from the keyboard', async () => {
      const start = row.getByRole('button', { exact: true, name: `Start ${NAME}` });
      await start.focus();
      await page.keyboard.press('Enter');
      await sidebar.locator(`li.eb-Endpoint[data-name="${NAME}"][data-state="running"]`).waitFor({ timeout: BUILD_TIMEOUT });
    });

    await step('logs open in the main area and show the gateway notes', async () => {
      await row.getByRole('button', { exact: true, name: `Logs of ${NAME}` }).click();
      const log = page.locator('.eb-LogView .eb-Log');
      await log.waitFor();
      await page.locator('.eb-LogView .eb-Log', { hasText: 'is serving' }).waitFor();
      await page.locator('.eb-LogView').screenshot({ path: join(ARTIFACTS, '06-logs.png') });
    });

    await step('source opens with the handler code', async () => {
      await row.getByRole('button', { exact: true, name: `Source of ${NAME}` }).click();
      await page.locator('.eb-SourceView .eb-Source', { hasText: 'fn handle(req: Request)' }).waitFor();
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

    await step('delete asks for confirmation, then the row goes and the empty state returns', async () => {
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
      await sidebar.locator('.eb-Empty').waitFor({ state: 'visible' });
      await page.locator('.eb-LogView .eb-FieldNote', { hasText: `${NAME} no longer exists` }).waitFor({ state: 'attached' });
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
