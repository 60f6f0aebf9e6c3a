"""The notebook layer end to end: magics through InteractiveShell and through a real kernel.

One project directory (and so one gateway) serves the whole module. The first notebook run
has no gateway: its kernel starts one in the background, as a kernel without a Jupyter
server does, and later kernels reuse it. Rust builds are kept to three distinct sources
(hello, hello edited, a compile error); everything else hits the build cache.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from edgebook.discovery import find_live, pid_alive
from edgebook.notebook.cells import DIAGNOSTICS_MIME
from edgebook.notebook.magics import admin_page_in_jupyter
from edgebook.notebook.session import request

HERE = Path(__file__).parent
REPO = HERE.parent
HELLO = (HERE / "resources" / "hello_handler.rs").read_text()
EDITED = HELLO.replace("Hello, World!", "Hello, edited!")
# Line 7 of the cell (the %%rust_handler line is line 1) uses a field that does not exist.
BROKEN = HELLO.replace('"path": req.path,', '"path": req.pathx,')

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")


def kernel_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDGEBOOK_DATA_DIR", "JPY_SESSION_NAME", "EDGEBOOK_WIDGETS",
                        "EDGEBOOK_PROXY_BASE", "EDGEBOOK_SERVER_ROOT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project directory; its gateway (started by the first kernel) is stopped at the end."""
    root = tmp_path_factory.mktemp("project")
    yield root
    info = find_live(str(root / ".edgebook"), check_health=False)
    if info is not None and pid_alive(info.pid):
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def run_notebook(root, cells, *, allow_errors=False, env=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c).strip("\n")) for c in cells]
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(root)}})
    client.execute(env=env or kernel_env(), cwd=str(root))
    return nb


def text_of(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
        elif out.output_type == "error":
            parts.append("\n".join(out.traceback))
    return "\n".join(parts)


def test_kernel_without_server_starts_a_gateway_deploys_requests_and_benches(project):
    started = time.monotonic()
    nb = run_notebook(project, [
        "%load_ext edgebook",
        "%%rust_handler GET /hello\n" + HELLO,
        """
        import edgebook
        r = edgebook.request("GET", "/hello", params={"q": "1"})
        print(r.status, r.json()["message"], r.json()["path"], bool(r.request_id))
        r
        """,
        "%rust_request GET /hello",
        """
        report = edgebook.bench("GET", "/hello", n=150, concurrency=4)
        print("bench", report.requests, report.error_count, list(report.df.columns)[:6])
        report
        """,
        "%rust_bench GET /hello -n 60 -c 2 --label second",
        "%edgebook status",
        "print(edgebook.history()[['endpoint', 'status']].to_dict('list'))",
    ])
    elapsed = time.monotonic() - started
    deploy = text_of(nb.cells[1])
    assert "deploying GET /hello as 'get_hello'" in deploy
    assert "GET /hello is live: http://127.0.0.1:" in deploy
    assert "curl -sS -i http://127.0.0.1:" in deploy
    assert "200 Hello, World! /hello True" in text_of(nb.cells[2])
    assert "HTTP 200 OK  GET /hello" in text_of(nb.cells[3])
    assert "bench 150 0 ['requests', 'concurrency', 'duration_s', 'req_per_s', 'errors', " \
           "'p50_ms']" in text_of(nb.cells[4])
    bench_cell = nb.cells[4].outputs[-1]
    # the latency plot, and the breakdown's (a notebook's gateway sends Server-Timing)
    assert bench_cell.data["text/html"].count("data:image/png;base64,") == 2
    assert "where the time went" in bench_cell.data["text/html"]
    assert "second: 60 requests" in text_of(nb.cells[5])
    status = text_of(nb.cells[6])
    assert "get_hello" in status and "running" in status
    assert "'endpoint': ['get_hello', 'get_hello']" in text_of(nb.cells[7])
    # The gateway outlives the kernel (nbclient shut it down) and keeps serving.
    info = find_live(str(project / ".edgebook"))
    assert info is not None
    assert request("GET", info.url + "/hello").json()["message"] == "Hello, World!"
    print(f"first notebook run: {elapsed:.1f} s")


def test_second_kernel_reuses_the_gateway_and_an_edit_hot_reloads(project):
    before = find_live(str(project / ".edgebook"))
    nb = run_notebook(project, [
        "%load_ext edgebook",
        "%%rust_handler GET /hello\n" + HELLO,
        "%%rust_handler GET /hello\n" + EDITED,
        "import edgebook; print(edgebook.request('GET', '/hello').json()['message'])",
    ])
    assert find_live(str(project / ".edgebook")).pid == before.pid
    assert "unchanged, cached binary" in text_of(nb.cells[1])
    assert "Hello, edited!" in text_of(nb.cells[3])


def test_compile_error_stops_the_notebook_at_the_cells_line(project):
    with pytest.raises(CellExecutionError) as caught:
        run_notebook(project, [
            "%load_ext edgebook",
            "%%rust_handler GET /broken\n" + BROKEN,
            "print('never runs')",
        ])
    message = str(caught.value)
    assert "BuildFailedError" in message
    assert "did not compile (1 error)" in message
    assert "--> cell line 7, column 21" in message
    assert '7 |         "path": req.pathx,' in message
    assert "Traceback" not in message  # a clean error, not a Python traceback


def test_widgets_in_a_live_frontend(project):
    nb = run_notebook(project, [
        "%load_ext edgebook",
        "%%rust_handler GET /hello\n" + EDITED,
    ], env=kernel_env(EDGEBOOK_WIDGETS="1"))
    views = [o for o in nb.cells[1].outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, nb.cells[1].outputs
    card = views[-1]["data"]  # the progress bar, replaced by the card with static fallbacks
    assert "is live at" in card["text/html"]
    assert card["text/plain"].startswith("GET /hello is live: http://127.0.0.1:")
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    names = {m["model_name"] for m in state.values()}
    assert {"FloatProgressModel", "ButtonModel", "TextModel", "OutputModel"} <= names
    html = " ".join(m["state"].get("value", "") for m in state.values()
                    if m["model_name"] == "HTMLModel")
    assert "is live at" in html


def test_status_names_the_admin_page_on_the_jupyter_server(monkeypatch):
    monkeypatch.setenv("EDGEBOOK_PROXY_BASE", "/user/ada/edgebook/proxy")
    assert admin_page_in_jupyter() == "/user/ada/edgebook/admin/"
    monkeypatch.delenv("EDGEBOOK_PROXY_BASE")
    assert admin_page_in_jupyter() is None


def test_a_failed_build_in_a_live_frontend_leaves_a_card_with_diagnostics(project):
    nb = run_notebook(project, [
        "%load_ext edgebook",
        "%%rust_handler GET /widget_broken\n" + BROKEN,
    ], allow_errors=True, env=kernel_env(EDGEBOOK_WIDGETS="1"))
    outputs = nb.cells[1].outputs
    [card] = [o for o in outputs if DIAGNOSTICS_MIME in o.get("data", {})]
    assert "application/vnd.jupyter.widget-view+json" not in card["data"]  # no bar left over
    assert card["data"]["text/plain"].startswith("GET /widget_broken: build failed")
    [mark] = card["data"][DIAGNOSTICS_MIME]["diagnostics"]
    assert (mark["line"], mark["level"]) == (7, "error") and "pathx" in mark["message"]
    assert text_of(nb.cells[1]).count("did not compile") == 1


SHELL_SCRIPT = r"""
import json, os, sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "edgebook")
results = {}

def run(key, code):
    with capture_output() as cap:
        result = ip.run_cell(code)
    results[key] = {"ok": result.success, "stdout": cap.stdout, "stderr": cap.stderr,
                    "error": type(result.error_in_exec).__name__ if result.error_in_exec else None,
                    "outputs": [o.data.get("text/plain", "") for o in cap.outputs]}

src = json.loads(sys.argv[1])
os.environ["JPY_SESSION_NAME"] = os.path.join(os.getcwd(), "notes", "demo.ipynb")
os.environ["EDGEBOOK_SERVER_ROOT"] = os.getcwd()
ip.parent_header = {"metadata": {"cellId": "cell-42"}}
noisy = src["hello"].replace("fn handle(req: Request) -> Response {",
                            "fn handle(req: Request) -> Response {\n"
                            "    eprintln!(\"serving {}\", req.path);")
run("deploy", "%%rust_handler GET /shell/{id} --name shell_hello --workers 2\n" + noisy)
run("request", "r = %rust_request GET /shell/7\nprint(r.json()['path'], r.status)")
from edgebook.notebook import session
results["origin"] = session.current().admin.endpoint("shell_hello").get("origin")
from edgebook.notebook.cells import DeployedEndpoint
from edgebook.notebook.tryit import TryIt
endpoint = session.current().admin.endpoint("shell_hello")
tryit = TryIt(DeployedEndpoint(name="shell_hello", method="GET", path="/shell/{id}",
                               url=endpoint["url"], revision=None), session.current())
tryit.path.value = "/shell/5"
tryit._send()
results["tryit"] = [o["data"]["text/plain"] for o in tryit.output.outputs]
run("post", "%rust_request POST /shell/7 {\"a\": 1}")
run("broken", "%%rust_handler GET /shell/{id} --name shell_hello\n" + src["broken"])
run("still", "r = %rust_request GET /shell/8\nprint(r.status, r.json()['path'])")
run("logs", "%edgebook logs shell_hello -n 5")
import edgebook
history = edgebook.history("shell_hello")
results["history"] = history[["method", "path", "status", "stderr"]].to_dict("records")
run("url", "u = %edgebook url shell_hello\nprint(u)")
run("stop", "%edgebook stop shell_hello")
run("stopped", "r = %rust_request GET /shell/9\nprint(r.status)")
run("start", "%edgebook start shell_hello")
run("rm", "%edgebook rm shell_hello")
run("bad_method", "%%rust_handler FETCH /x\nfn handle() {}")
run("bad_path", "%%rust_handler GET x\nfn handle() {}")
run("empty", "%%rust_handler GET /x\n")
run("no_name", "%edgebook logs")
run("bench_remote", "%rust_bench GET http://192.0.2.1/x -n 5")
run("service_add", "%edgebook service add notes sqlite services/notes.sqlite3 pool_size=2")
run("service_list", "services = %edgebook service list\nprint(services.to_string())")
run("service_test", "%edgebook service test notes")
run("service_rm", "%edgebook service rm notes")
run("service_bad", "%edgebook service add cache redis redis://a redis://b")
print(json.dumps(results))
"""


def test_magics_through_interactive_shell(project):
    env = kernel_env(EDGEBOOK_DATA_DIR=str(project / ".edgebook"))
    out = subprocess.run([sys.executable, "-c", SHELL_SCRIPT,
                          json.dumps({"hello": HELLO, "broken": BROKEN})],
                         capture_output=True, text=True, env=env, timeout=600, cwd=project)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["deploy"]["ok"], r["deploy"]
    assert "GET /shell/{id} is live" in r["deploy"]["outputs"][0]
    assert "http://127.0.0.1:" in r["deploy"]["outputs"][0] and "/shell/1" in \
        r["deploy"]["outputs"][0]
    assert "/shell/7 200" in r["request"]["stdout"]
    assert r["origin"] == {"notebook": os.path.join("notes", "demo.ipynb"), "cell_id": "cell-42"}
    assert len(r["tryit"]) == 1 and r["tryit"][0].startswith("HTTP 200 OK  GET /shell/5")
    assert "HTTP 405 Method Not Allowed  POST /shell/7" in r["post"]["stdout"]
    assert r["broken"]["error"] == "BuildFailedError"
    assert "keeps serving" in json.dumps(r["broken"])
    assert "200 /shell/8" in r["still"]["stdout"]  # the old revision keeps serving
    assert r["logs"]["ok"] and "serving /shell/8" in r["logs"]["stdout"]
    # the 405 is the gateway's answer, not the endpoint's: it is not in its history
    assert [(h["path"], h["status"]) for h in r["history"]] == [
        ("/shell/7", 200), ("/shell/5", 200), ("/shell/8", 200)]
    assert [h["stderr"] for h in r["history"]] == [
        "serving /shell/7", "serving /shell/5", "serving /shell/8"]
    assert r["url"]["stdout"].strip().endswith("/shell/{id}")
    assert "shell_hello: stopped" in r["stop"]["stdout"]
    assert r["stopped"]["stdout"].strip() == "503"
    assert "shell_hello: running" in r["start"]["stdout"]
    assert "shell_hello: removed" in r["rm"]["stdout"]
    assert r["service_add"]["ok"] and '"pool_size": 2' in r["service_add"]["stdout"]
    assert "notes" in r["service_list"]["stdout"] and "default" in r["service_list"]["stdout"]
    assert "notes: ok" in r["service_test"]["stdout"]
    assert "notes: removed" in r["service_rm"]["stdout"]
    for key in ("bad_method", "bad_path", "empty", "no_name", "bench_remote", "service_bad"):
        assert r[key]["error"] == "UsageError", (key, r[key])


INTERRUPT_SCRIPT = r"""
import json, os, signal, sys, threading, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "edgebook")
ip.run_line_magic("edgebook", "status")  # the gateway is found before the clock starts
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
result = ip.run_cell("%%rust_handler GET /slow\n" + sys.argv[1])
print(json.dumps({"error": type(result.error_in_exec).__name__,
                  "keyboard": isinstance(result.error_in_exec, KeyboardInterrupt),
                  "seconds": time.monotonic() - started}))
"""


def test_interrupt_stops_waiting_for_a_build(project):
    # compile-time evaluation that would take hours: the build is still running when the
    # interrupt comes, however fast the machine
    slow = ("#![allow(long_running_const_eval)]\n" + HELLO.replace(
        "handler_loop!(handle);",
        "#[allow(dead_code)]\nconst SPIN: u64 = {\n    let mut i = 0u64;\n"
        "    while i < 1_000_000_000_000 {\n        i += 1;\n    }\n    i\n};\n\n"
        "handler_loop!(handle);"))
    env = kernel_env(EDGEBOOK_DATA_DIR=str(project / ".edgebook"))
    out = subprocess.run([sys.executable, "-c", INTERRUPT_SCRIPT, slow], capture_output=True,
                         text=True, env=env, timeout=600, cwd=project)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] == "DeployInterrupted" and result["keyboard"]
    assert result["seconds"] < 3.0, result  # the build alone takes longer than that
    assert "interrupted: stopped waiting for 'get_slow'; its build was cancelled" in out.stderr
    from edgebook.client import AdminClient, AdminError
    admin = AdminClient.from_data_dir(str(project / ".edgebook"))
    for _ in range(200):  # the build task records the cancellation as it unwinds
        try:
            endpoint = admin.endpoint("get_slow")
        except AdminError as exc:  # a new endpoint whose first build was cancelled is gone
            assert exc.status == 404
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the cancelled first deploy is still listed: {endpoint}")


def test_import_in_ipython_registers_the_magics():
    script = ("from IPython.core.interactiveshell import InteractiveShell\n"
              "ip = InteractiveShell.instance()\n"
              "ip.run_cell('import edgebook')\n"
              "print(sorted(n for n in ip.magics_manager.magics['line'] "
              "if n in ('edgebook', 'rust_request', 'rust_bench')),\n"
              "      'rust_handler' in ip.magics_manager.magics['cell'])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=kernel_env(), timeout=60)
    assert out.stdout.strip() == "['edgebook', 'rust_bench', 'rust_request'] True", out.stderr


def test_status_shows_revisions_as_integers():
    from edgebook.notebook.magics import GatewayMagics

    class Admin:
        def endpoints(self):
            return [{"name": "a", "method": "GET", "path": "/a", "state": "running",
                     "live_revision": 12, "options": {"workers": 2}},
                    {"name": "b", "method": "GET", "path": "/b", "state": "building",
                     "live_revision": None, "options": {}}]
    df = GatewayMagics._status(None, None, Admin(), None)
    assert df.loc["a", "revision"] == 12 and df.loc["a", "workers"] == 2
    text = df.to_string()
    assert "12.0" not in text and "NaN" not in text and "<NA>" in text
