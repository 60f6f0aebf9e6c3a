// Runs `jupyter labextension build` with the installed JupyterLab's own core package file,
// so the build needs no network access to fetch @jupyterlab/core-meta.
//
// Finds a Python that imports jupyterlab: $PYTHON, then the one beside `jupyter` on PATH,
// then python3 / python. Extra arguments (e.g. --development) are passed through.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    const candidate = join(dir, name);
    if (dir && existsSync(candidate)) {
      return candidate;
    }
  }
  return null;
}

function corePackageFile(python) {
  const probe = spawnSync(
    python,
    [
      '-c',
      'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging", "package.json"))'
    ],
    { encoding: 'utf8' }
  );
  if (probe.status !== 0) {
    return null;
  }
  const file = probe.stdout.trim();
  return existsSync(file) ? file : null;
}

const jupyter = onPath('jupyter');
const candidates = [
  process.env.PYTHON,
  jupyter && join(dirname(jupyter), 'python'),
  'python3',
  'python'
].filter(Boolean);

let python = null;
let core = null;
for (const candidate of candidates) {
  core = corePackageFile(candidate);
  if (core) {
    python = candidate;
    break;
  }
}
if (!python) {
  console.error(
    'build-labextension: no Python with JupyterLab found (tried ' +
      candidates.join(', ') +
      ')'
  );
  process.exit(1);
}

const env = { ...process.env };
// `jupyter labextension build` calls `jupyter-builder`, installed beside that Python.
env.PATH = dirname(python) + delimiter + (env.PATH || '');
const args = [
  '-m',
  'jupyterlab.labextensions',
  'build',
  root,
  '--core-package-file',
  core,
  ...process.argv.slice(2)
];
const result = spawnSync(python, args, { stdio: 'inherit', env });
process.exit(result.status ?? 1);
