"""The demo notebooks run top to bottom under nbval, one pytest run per notebook.

Each notebook is executed by ``pytest --nbval-lax`` in a child process (nbval collects
notebooks, not test modules, so it gets a run of its own): every cell must run without an
error, cells tagged ``nbval-check-output`` must print what the notebook has stored (after
``tests/nbval_sanitize.cfg``), and cells tagged ``raises-exception`` must fail. All
notebooks of the session share one isolated data dir (``EDGEBOOK_DATA_DIR``), so the first
kernel starts a gateway there and the others reuse it, as notebooks of a project do; the
gateway is stopped by its pid at the end.

Notebooks that talk to Redis, PostgreSQL or S3 get real servers on loopback
(``tests/servers.py``) through the ``EDGEBOOK_DEMO_*`` variables they read. Without a server
they run their fallback (and say so); with ``EDGEBOOK_REQUIRE_SERVICES=1`` a missing server
fails the test instead.

The same run by hand, against a gateway of your own::

    EDGEBOOK_DATA_DIR=$(mktemp -d)/.edgebook .venv/bin/python -m pytest -p no:cacheprovider \\
        --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from servers import postgres_server, redis_server, s3_server  # noqa: F401  (fixtures)

from edgebook.discovery import find_live, pid_alive

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"
NBVAL_ARGS = ["-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest",
              "--nbval-lax", "--nbval-current-env",
              "--nbval-sanitize-with", str(SANITIZE)]

# Variables the notebooks read to find the servers of the test setup (or a user's own).
_DROP = ("EDGEBOOK_DATA_DIR", "EDGEBOOK_WIDGETS", "EDGEBOOK_PROXY_BASE", "EDGEBOOK_SERVER_ROOT",
         "JPY_SESSION_NAME")

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is needed")


def source_of(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The notebooks' data dir; the gateway their first kernel starts is stopped at the end."""
    path = tmp_path_factory.mktemp("notebooks") / ".edgebook"
    yield path
    info = find_live(str(path), check_health=False)
    if info is not None and pid_alive(info.pid):
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(info.pid), f"the notebooks' gateway (pid {info.pid}) did not stop"


def optional_server(request, fixture: str):
    """The session's server, or None when it cannot run here (a failure if required)."""
    try:
        return request.getfixturevalue(fixture)
    except pytest.skip.Exception:
        return None


def service_env(request, source: str) -> dict[str, str]:
    env: dict[str, str] = {}
    if "EDGEBOOK_DEMO_POSTGRES_DSN" in source:
        server = optional_server(request, "postgres_server")
        if server is not None:
            env["EDGEBOOK_DEMO_POSTGRES_DSN"] = server.dsn()
    if "EDGEBOOK_DEMO_REDIS_URL" in source:
        server = optional_server(request, "redis_server")
        if server is not None:
            env["EDGEBOOK_DEMO_REDIS_URL"] = (f"redis://:{server.password}@127.0.0.1:"
                                              f"{server.port}/0")
    if "EDGEBOOK_DEMO_S3_ENDPOINT" in source:
        server = optional_server(request, "s3_server")
        if server is not None:
            env.update(EDGEBOOK_DEMO_S3_ENDPOINT=server.url,
                       EDGEBOOK_DEMO_S3_BUCKET="edgebook-demo",
                       EDGEBOOK_DEMO_S3_ACCESS_KEY_ID=server.access_key,
                       EDGEBOOK_DEMO_S3_SECRET_ACCESS_KEY=server.secret_key)
    return env


LANGUAGE_INFO_KEYS = {"name", "version", "mimetype", "codemirror_mode", "pygments_lexer",
                      "nbconvert_exporter", "file_extension"}


def test_the_quick_start_links_to_every_other_notebook():
    quick = nbformat.read(NOTEBOOKS[0], as_version=4)
    text = "\n".join(cell.source for cell in quick.cells if cell.cell_type == "markdown")
    for path in NOTEBOOKS[1:]:
        assert f"]({path.name})" in text, f"no link to {path.name}"


def test_there_are_demo_notebooks_and_they_are_clean():
    """Every notebook has stored outputs only where nbval compares them, and no local paths."""
    assert len(NOTEBOOKS) >= 8
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", path.name
        # All that JupyterLab writes from the kernel's info on opening; with less there,
        # opening the notebook marks it modified (tools/refresh_notebooks.py stores it).
        assert set(nb.metadata.language_info) >= LANGUAGE_INFO_KEYS, path.name
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            tags = cell.metadata.get("tags", [])
            if "nbval-check-output" in tags:
                assert cell.outputs, f"{path.name}: a checked cell has no stored output"
            else:
                assert not cell.outputs, f"{path.name}: outputs stored for an unchecked cell"
            assert not re.search(r"nbval-|NBVAL_", cell.source), \
                f"{path.name}: use cell tags, not markers in the source"
        text = path.read_text()
        machine = re.search(r"/(work|root|home|tmp)/", text)
        assert machine is None, f"{path.name} mentions {machine and machine.group(0)}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_nbval(notebook, data_dir, request):
    env = {k: v for k, v in os.environ.items()
           if k not in _DROP and not k.startswith("EDGEBOOK_DEMO_")}
    env["EDGEBOOK_DATA_DIR"] = str(data_dir)
    env.update(service_env(request, source_of(notebook)))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", *NBVAL_ARGS, str(notebook)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=840)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, (f"nbval failed on {notebook.name} after {elapsed:.0f} s:\n"
                                  f"{done.stdout[-12000:]}\n{done.stderr[-4000:]}")
    assert " passed" in done.stdout, done.stdout[-2000:]
    print(f"{notebook.name}: {elapsed:.1f} s; {done.stdout.strip().splitlines()[-1]}")
