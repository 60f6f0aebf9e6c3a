// UI test of the headless admin page (edgebook/admin/static) in headless Chromium against a
// real gateway started with `python -m edgebook serve`, served at /admin/ by the gateway's
// admin listener; a gateway that does not serve it fails the test. Screenshots go to
// tests/artifacts/admin-page/.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { projectPython, ROOT } from './jupyter.mjs';

const require = createRequire(join(ROOT, 'labextension', 'package.json'));
const { chromium } = require('playwright-core');

const ARTIFACTS = join(ROOT, 'tests', 'artifacts', 'admin-page');
const BUILD_TIMEOUT = Number(process.env.EDGEBOOK_UI_BUILD_TIMEOUT || 300000);
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const results = [];
let failed = 0;
let currentPage = null;

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed += 1;
    results.push({ name, ok: false });
    console.log(`FAIL ${name}\n     ${String(error?.stack || error).split('\n').slice(0, 6).join('\n     ')}`);
    if (currentPage) {
      await currentPage.screenshot({ path: join(ARTIFACTS, 'failure.png') }).catch(() => undefined);
    }
    throw Object.assign(error instanceof Error ? error : new Error(String(error)), { reported: true });
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

/** Starts `edgebook serve` in a temporary data dir; resolves with its runtime info. */
async function startGateway(work) {
  const dataDir = join(work, 'data');
  const child = spawn(projectPython(), ['-m', 'edgebook', 'serve', '--data-dir', dataDir, '--port', '0'], {
    cwd: work, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONPATH: [ROOT, process.env.PYTHONPATH].filter(Boolean).join(':') }
  });
  let output = '';
  child.stdout.on('data', c => { output += c; });
  child.stderr.on('data', c => { output += c; });
  const runtime = join(dataDir, 'runtime.json');
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`edgebook serve exited ${child.exitCode}:\n${output}`);
    if (existsSync(runtime)) {
      try {
        const info = JSON.parse(readFileSync(runtime, 'utf8'));
        if (info.pid === child.pid) {
          const health = await fetch(new URL('/api/health', info.admin_url), {
            headers: { Authorization: `Bearer ${info.token}` } }).catch(() => null);
          if (health?.ok) return { info, child, log: () => output };
        }
      } catch { /* written but not complete yet */ }
    }
    await new Promise(r => setTimeout(r, 100));
  }
  child.kill('SIGTERM');
  throw new Error(`edgebook serve did not come up:\n${output}`);
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  rmSync(join(ARTIFACTS, 'failure.png'), { force: true });
  const work = mkdtempSync(join(tmpdir(), 'edgebook-admin-ui-'));
  const gateway = await startGateway(work);
  const base = new URL('/admin/', gateway.info.admin_url).href;
  const served = await fetch(base).catch(error => ({ ok: false, status: String(error), headers: new Headers() }));
  if (!served.ok || !(served.headers.get('content-type') || '').includes('html')) {
    gateway.child.kill('SIGTERM');
    throw new Error(`the gateway does not serve the admin page at ${base} (${served.status})`);
  }
  const context = await chromium.launchPersistentContext(join(work, 'chromium'), {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
    viewport: { width: 1200, height: 1000 }
  });
  const consoleErrors = [];
  try {
    await context.route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, route => route.abort());
    const page = context.pages()[0] || (await context.newPage());
    currentPage = page;
    page.setDefaultTimeout(30000);
    page.on('console', msg => {
      if (msg.type() === 'error') consoleErrors.push(`${msg.text()} [${msg.location()?.url}]`);
    });
    page.on('pageerror', error => consoleErrors.push(`pageerror: ${error.message}`));
    const row = page.locator('#endpoints tr[data-name="hello"]');

    await step('a wrong token is refused, the right one logs in', async () => {
      await page.goto(base);
      await page.locator('#token').fill('not-the-token');
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.locator('#login-error', { hasText: 'not accepted' }).waitFor();
      await page.locator('#token').fill(gateway.info.token);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.locator('#app').waitFor({ state: 'visible' });
      await page.locator('#empty').waitFor({ state: 'visible' });
      await page.screenshot({ path: join(ARTIFACTS, '01-logged-in-empty.png') });
    });

    await step('a build error is shown at its line', async () => {
      await page.getByRole('button', { name: 'New endpoint' }).click();
      const broken = (await page.locator('#ed-source').inputValue()).replace('Response::ok(', 'Response::okk(');
      await page.locator('#ed-source').fill(broken);
      await page.getByRole('button', { name: 'Build and deploy' }).click();
      const diagnostic = page.locator('#diagnostics li[data-level="error"]').first();
      await diagnostic.waitFor({ timeout: BUILD_TIMEOUT });
      const text = await diagnostic.textContent();
      expect(/^line 4(:\d+)?: error: /.test(text), `diagnostic: ${text}`);
      expect((await page.locator('#ed-gutter .bad').allTextContents()).map(t => t.trim()).includes('4'), 'line 4 not marked');
      await page.screenshot({ path: join(ARTIFACTS, '02-build-error.png') });
    });

    await step('fixing it builds and deploys; the list shows it running', async () => {
      const fixed = (await page.locator('#ed-source').inputValue()).replace('Response::okk(', 'Response::ok(');
      await page.locator('#ed-source').fill(fixed);
      await page.getByRole('button', { name: 'Build and deploy' }).click();
      await page.locator('#ed-status', { hasText: 'hello is running' }).waitFor({ timeout: BUILD_TIMEOUT });
      await page.locator('#endpoints tr[data-name="hello"][data-state="running"]').waitFor();
      expect((await page.locator('#diagnostics li[data-level="error"]').count()) === 0, 'errors still listed');
    });

    await step('the request builder gets 200 and the body', async () => {
      await page.getByRole('button', { name: 'Send' }).click();
      await page.locator('#resp-status[data-status="200"]').waitFor();
      const body = await page.locator('#resp-body').textContent();
      expect(body.includes('"message": "Hello, World!"'), `body: ${body}`);
      await row.locator('.requests', { hasText: /^[1-9]/ }).waitFor();
      await page.screenshot({ path: join(ARTIFACTS, '03-running-200.png') });
    });

    await step('the new-endpoint form starts on a free route; counts are plural-aware', async () => {
      await page.locator('#endpoint-count', { hasText: /^1 endpoint, 1 running$/ }).waitFor();
      await page.getByRole('button', { name: 'New endpoint' }).click();
      expect((await page.locator('#ed-path').inputValue()) === '/hello-2', 'the form defaults to the existing /hello');
      expect((await page.locator('#ed-name').inputValue()) === 'hello_2', 'the form defaults to the existing name');
      await page.getByRole('button', { name: 'Build and deploy' }).click();
      await page.locator('#ed-status', { hasText: 'hello_2 is running' }).waitFor({ timeout: BUILD_TIMEOUT });
      await page.locator('#endpoint-count', { hasText: /^2 endpoints, 2 running$/ }).waitFor();
      await page.getByRole('button', { name: 'New endpoint' }).click();
      expect((await page.locator('#ed-path').inputValue()) === '/hello-3', 'the form defaults to an existing route');
      await page.locator('.section-head').screenshot({ path: join(ARTIFACTS, '05-count-plural.png') });
    });

    await step('at 700 px wide nothing overflows and every action stays reachable', async () => {
      await page.setViewportSize({ width: 700, height: 1000 });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      expect(overflow <= 0, `the page is ${overflow} px wider than the window`);
      for (const name of ['Edit hello', 'Start hello', 'Stop hello', 'Delete hello']) {
        const box = await page.getByRole('button', { name, exact: true }).boundingBox();
        expect(box && box.x >= 0 && box.x + box.width <= 700, `${name} is outside the window: ${JSON.stringify(box)}`);
      }
      await page.screenshot({ path: join(ARTIFACTS, '06-700px.png'), fullPage: true });
      await page.setViewportSize({ width: 1200, height: 1000 });
      page.once('dialog', dialog => dialog.accept());
      await page.getByRole('button', { name: 'Delete hello_2' }).click();
      await page.locator('#endpoints tr[data-name="hello_2"]').waitFor({ state: 'detached' });
    });

    await step('stop and start change the state', async () => {
      await page.getByRole('button', { name: 'Stop hello' }).click();
      await page.locator('#endpoints tr[data-name="hello"][data-state="stopped"]').waitFor();
      await page.screenshot({ path: join(ARTIFACTS, '04-stopped.png') });
      await page.getByRole('button', { name: 'Start hello' }).click();
      await page.locator('#endpoints tr[data-name="hello"][data-state="running"]').waitFor();
    });

    await step('delete after confirming', async () => {
      page.once('dialog', dialog => dialog.accept());
      await page.getByRole('button', { name: 'Delete hello' }).click();
      await row.waitFor({ state: 'detached' });
      await page.locator('#empty').waitFor({ state: 'visible' });
    });

    await step('no console errors', async () => {
      // The two failed loads the flow causes on purpose: the wrong token and the broken build.
      const expected = [/status of 401 .*\/api\/health\]$/, /status of 422 .*\/api\/endpoints\/hello\?wait=1\]$/];
      const unexpected = consoleErrors.filter(text => !expected.some(re => re.test(text)));
      expect(unexpected.length === 0, `console errors:\n${unexpected.join('\n')}`);
    });
  } finally {
    await context.close();
    gateway.child.kill('SIGTERM');
    await new Promise(r => (gateway.child.exitCode !== null ? r() : gateway.child.once('exit', r)));
    if (failed) console.log(`\ngateway output (last 3000 characters):\n${gateway.log().slice(-3000)}`);
    rmSync(work, { recursive: true, force: true });
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
