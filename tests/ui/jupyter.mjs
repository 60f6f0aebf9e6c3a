// Starts a real JupyterLab for the UI tests: loopback only, a random token, a port chosen by
// the kernel, isolated Jupyter config/data/runtime dirs, and the built labextension found
// through JUPYTER_PATH (nothing is installed into the environment).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILT_EXTENSION = join(ROOT, 'edgebook', 'labextension');

/** The project's Python: $PYTHON, else the repository's .venv, else python3 on PATH
 * (a worktree without a .venv of its own: PYTHON=<main checkout>/.venv/bin/python). */
export function projectPython() {
  if (process.env.PYTHON) {
    return process.env.PYTHON;
  }
  const venv = join(ROOT, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/** Writes `cells` (an array of code strings) as a minimal nbformat 4.5 notebook. */
export function writeNotebook(path, cells) {
  const notebook = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' },
      language_info: { name: 'python' }
    },
    cells: cells.map((source, index) => ({
      id: `cell-${index}`,
      cell_type: 'code',
      metadata: {},
      execution_count: null,
      outputs: [],
      source
    }))
  };
  writeFileSync(path, JSON.stringify(notebook, null, 1));
}

/**
 * Starts `jupyter lab` in a fresh temporary project; resolves with
 * `{ url, token, project, work, stop(), log() }` once the server answers.
 */
export async function startJupyterLab({ timeoutMs = 60000, extraArgs = [], env = {}, serverExtensions = {} } = {}) {
  if (!existsSync(join(BUILT_EXTENSION, 'package.json'))) {
    throw new Error(
      `the labextension is not built (${BUILT_EXTENSION} is missing); run \`jlpm build\` in labextension/`
    );
  }
  const work = mkdtempSync(join(tmpdir(), 'edgebook-ui-'));
  const project = join(work, 'project');
  const share = join(work, 'share');
  mkdirSync(project);
  mkdirSync(join(share, 'labextensions', '@edgebook'), { recursive: true });
  symlinkSync(BUILT_EXTENSION, join(share, 'labextensions', '@edgebook', 'labextension'));
  mkdirSync(join(work, 'config'));
  writeFileSync(
    join(work, 'config', 'jupyter_server_config.json'),
    JSON.stringify({ ServerApp: { jpserver_extensions: serverExtensions } })
  );
  const token = randomBytes(24).toString('hex');
  const python = projectPython();
  const childEnv = {
    ...process.env,
    JUPYTER_PATH: [share, process.env.JUPYTER_PATH].filter(Boolean).join(':'),
    JUPYTER_CONFIG_DIR: join(work, 'config'),
    JUPYTER_DATA_DIR: join(work, 'data'),
    JUPYTER_RUNTIME_DIR: join(work, 'runtime'),
    IPYTHONDIR: join(work, 'ipython'),
    JUPYTER_PLATFORM_DIRS: '1',
    // The kernel's Python is the project's; keep its scripts (jupyter-builder, edgebook) first.
    PATH: `${dirname(python)}:${process.env.PATH}`,
    // This tree's edgebook, whichever checkout the Python has installed (a worktree
    // sharing another checkout's virtualenv tests its own code, as it does its own build).
    PYTHONPATH: [ROOT, process.env.PYTHONPATH].filter(Boolean).join(':'),
    ...env
  };
  const args = [
    '-m', 'jupyter', 'lab',
    '--no-browser',
    '--allow-root',
    '--ServerApp.ip=127.0.0.1',
    '--ServerApp.port=0',
    '--ServerApp.port_retries=0',
    `--IdentityProvider.token=${token}`,
    `--ServerApp.root_dir=${project}`,
    '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
    ...extraArgs
  ];
  const child = spawn(python, args, { cwd: project, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = chunk => {
    output += chunk.toString();
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise(resolveExit => child.once('exit', code => resolveExit(code)));

  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`JupyterLab did not start within ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const check = () => {
      const match = /(http:\/\/127\.0\.0\.1:\d+\/)(lab)?\?token=/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    exited.then(code => {
      clearTimeout(timer);
      reject(new Error(`JupyterLab exited with status ${code}:\n${output}`));
    });
  });

  async function stop() {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(timer);
    }
  }

  return { url, token, project, work, python, stop, log: () => output, child };
}

/** Calls the Jupyter server's REST API with the token. */
export async function jupyterFetch(server, path, init = {}) {
  const headers = { Authorization: `token ${server.token}`, ...(init.headers || {}) };
  return fetch(new URL(path, server.url), { ...init, headers });
}
