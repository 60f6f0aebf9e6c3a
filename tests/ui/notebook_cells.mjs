// The notebook experience in a real JupyterLab and headless Chromium, with widgets live:
// run the seed's hello-world %%rust_handler cell and see the progress bar, then the live URL,
// the curl line and the try-it form; press Send and see the response card; re-run the cell
// unchanged and after a one-line edit and see the new behaviour; run a load test and see its
// percentile table and histogram. Prints the measured cell-to-live times (from running the
// cell to the live card being on screen) and writes screenshots to tests/artifacts/ui/.
//
//   node tests/ui/notebook_cells.mjs     (from the repository root; needs the built
//                                          labextension, like tests/ui/run.mjs)
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { jupyterFetch, ROOT, startJupyterLab, writeNotebook } from './jupyter.mjs';

const require = createRequire(join(ROOT, 'labextension', 'package.json'));
const { chromium } = require('playwright-core');

const ARTIFACTS = join(ROOT, 'tests', 'artifacts', 'ui');
const HELLO = readFileSync(join(ROOT, 'tests', 'resources', 'hello_handler.rs'), 'utf8');
const CELL = `%%rust_handler GET /hello\n${HELLO}`.trimEnd();
const EDITED = CELL.replace('Hello, World!', 'Hello, edited!');
const BUILD_TIMEOUT = Number(process.env.EDGEBOOK_UI_BUILD_TIMEOUT || 300000);

let failures = 0;
async function step(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (error) {
    failures += 1;
    console.log(`FAIL ${name}\n     ${String(error.stack || error).split('\n').join('\n     ')}`);
  }
}

function expect(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

// However the page behaves, the run ends: a hang becomes a failure, not a stuck CI job.
const WATCHDOG_MS = Number(process.env.EDGEBOOK_UI_WATCHDOG || 900000);

let cleanup = async () => undefined;

async function main() {
  setTimeout(() => {
    console.log(`FAIL the notebook-cells run did not finish within ${WATCHDOG_MS / 1000} s`);
    setTimeout(() => process.exit(1), 30000).unref(); // if stopping hangs too
    cleanup().finally(() => process.exit(1));
  }, WATCHDOG_MS).unref();
  mkdirSync(ARTIFACTS, { recursive: true });
  const server = await startJupyterLab({
    serverExtensions: { edgebook: true },
    extraArgs: ['--LabApp.expose_app_in_browser=True']
  });
  const timings = {};
  let context = null;
  cleanup = async () => {
    await context?.close().catch(() => undefined);
    await server.stop();
  };
  try {
    writeNotebook(join(server.project, 'cells.ipynb'), [
      '%load_ext edgebook',
      CELL,
      'import edgebook\nreport = edgebook.bench("GET", "/hello", duration=1.5, concurrency=4)\nreport'
    ]);
    await jupyterFetch(server, 'lab/api/settings/@jupyterlab/apputils-extension:notification', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ raw: '{"fetchNews": "false", "checkForUpdates": false}' })
    });
    context = await chromium.launchPersistentContext(mkdtempSync(join(server.work, 'chromium-')), {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 }
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(30000);
    await context.route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, route => route.abort());

    const cell = index => page.locator('.jp-Notebook .jp-CodeCell').nth(index);
    const run = async index => {
      // Start the cell and return: the command's promise settles only when the cell has
      // run, and page.evaluate has no timeout of its own. Each step waits for what it
      // expects on screen, with a bound.
      await page.evaluate(i => {
        const panel = window.jupyterapp.shell.currentWidget;
        panel.content.activeCellIndex = i;
        void window.jupyterapp.commands.execute('notebook:run-cell');
      }, index);
    };
    const setSource = async (index, source) => {
      await page.evaluate(
        ([i, text]) => window.jupyterapp.shell.currentWidget.content.widgets[i].model.sharedModel.setSource(text),
        [index, source]
      );
    };
    const liveCard = cell(1).locator('.edgebook-endpoint');
    const timed = async (name, fn) => {
      const started = Date.now();
      await fn();
      timings[name] = (Date.now() - started) / 1000;
    };

    await step('the notebook opens with a kernel', async () => {
      await page.goto(`${server.url}lab/tree/cells.ipynb?token=${server.token}`);
      await cell(1).locator('.cm-content').waitFor();
      // The kernel is up once the status bar says so (as in run.mjs).
      await page.locator('.jp-StatusBar-TextItem', { hasText: /Python 3 \(ipykernel\) \| Idle/ }).first()
        .waitFor({ timeout: 120000 });
      await run(0);
      await cell(0).locator('.jp-InputPrompt', { hasText: '[1]' }).waitFor({ timeout: 60000 }).catch(async error => {
        const dialog = await page.locator('.jp-Dialog').allTextContents();
        throw new Error(`${error.message}${dialog.length ? `\nopen dialog: ${dialog.join(' | ')}` : ''}`);
      });
    });

    await step('running the handler cell shows progress, then the live URL, curl and try-it', async () => {
      await page.evaluate(() => {
        window.sawProgress = false;
        new MutationObserver(() => {
          window.sawProgress ||= Boolean(document.querySelector('.jp-CodeCell .widget-hprogress'));
        }).observe(document.body, { childList: true, subtree: true });
      });
      await timed('first run', async () => {
        await run(1);
        await liveCard.waitFor({ timeout: BUILD_TIMEOUT });
      });
      expect(await page.evaluate(() => window.sawProgress), 'no progress bar was shown');
      const text = await liveCard.textContent();
      expect(/GET \/hello is live at/.test(text), `card: ${text}`);
      expect(text.includes('curl -sS -i'), `no curl line: ${text}`);
      await cell(1).locator('.jupyter-widgets button', { hasText: 'Send' }).waitFor();
      await cell(1).locator('.jp-Cell-outputArea').screenshot({ path: join(ARTIFACTS, 'cells-01-live.png') });
    });

    const send = async expected => {
      await cell(1).locator('.jupyter-widgets button', { hasText: 'Send' }).click();
      const card = cell(1).locator('.edgebook-response', { hasText: expected });
      await card.waitFor();
      const text = await card.textContent();
      expect(text.includes('200 OK'), `response: ${text}`);
    };

    await step('Send in the try-it form shows the response card', async () => {
      await send('Hello, World!');
      await cell(1).locator('.jp-Cell-outputArea').screenshot({ path: join(ARTIFACTS, 'cells-02-try-it.png') });
    });

    await step('re-running the unchanged cell is immediate', async () => {
      await timed('unchanged re-run', async () => {
        await run(1);
        await cell(1).locator('.edgebook-endpoint', { hasText: 'unchanged, cached binary' }).waitFor();
      });
    });

    await step('a one-line edit is live after re-running the cell', async () => {
      await setSource(1, EDITED);
      await timed('one-line edit', async () => {
        await run(1);
        await cell(1).locator('.edgebook-endpoint', { hasText: /built in/ }).waitFor({ timeout: BUILD_TIMEOUT });
      });
      await send('Hello, edited!');
    });

    await step('a load test shows live progress, then the percentile table and the histogram', async () => {
      await page.evaluate(() => {
        window.sawProgress = false;
      });
      await run(2);
      const bench = cell(2).locator('.edgebook-bench');
      await bench.locator('img').waitFor({ timeout: 120000 });
      expect(await page.evaluate(() => window.sawProgress), 'no progress bar during the load test');
      expect((await cell(2).locator('.widget-hprogress').count()) === 0, 'the progress bar stayed');
      const table = await bench.locator('table').textContent();
      for (const column of ['p50_ms', 'p90_ms', 'p99_ms', 'max_ms', 'req_per_s']) {
        expect(table.includes(column), `no ${column} in ${table}`);
      }
      await bench.screenshot({ path: join(ARTIFACTS, 'cells-03-bench.png') });
    });
  } finally {
    if (context) {
      await context.close();
    }
    await server.stop();
  }
  for (const [name, seconds] of Object.entries(timings)) {
    console.log(`cell-to-live, ${name}: ${seconds.toFixed(2)} s`);
  }
  process.exit(failures ? 1 : 0);
}

main().catch(error => {
  console.error(error);
  process.exit(1);
});
