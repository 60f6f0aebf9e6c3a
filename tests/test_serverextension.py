"""The Jupyter server extension under a real `jupyter server` started by the test.

The server runs on a free loopback port with a token and only this extension enabled. It
starts the project's gateway itself, answers its routes only with Jupyter's auth, proxies
the admin API (including the event stream) and the data plane, restarts the gateway when
it dies, and stops it with the server.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from edgebook.client import AdminClient
from edgebook.discovery import find_live, pid_alive, read_runtime

HERE = Path(__file__).parent
REPO = HERE.parent
HELLO = (HERE / "resources" / "hello_handler.rs").read_text()
TOKEN = "edgebook-test-token"

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url, method="GET", body=None, headers=None, timeout=600):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()
    except (urllib.error.URLError, ConnectionError) as exc:  # not listening (yet)
        return 0, {}, str(exc).encode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def jupyter_server(root, *extra, ready=(200,)):
    """A `jupyter server` for ``root`` with only this extension, on a free loopback port
    (``extra``: more command-line options; ``ready``: the health statuses to wait for;
    ``tests/resources`` is importable, for a test authorizer)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDGEBOOK_DATA_DIR", "EDGEBOOK_PROXY", "EDGEBOOK_SERVER"))}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), str(REPO / "tests" / "resources"), env.get("PYTHONPATH")]))
    env["JUPYTER_NO_CONFIG"] = "1"  # no other extensions: only this one, enabled below
    env["JUPYTER_RUNTIME_DIR"] = str(root / ".runtime")
    log = open(root / "jupyter.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
         f"--port={port}", "--ip=127.0.0.1", "--port-retries=0",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         "--ServerApp.jpserver_extensions={'edgebook': True}", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"token {TOKEN}"}
    try:
        wait_for(lambda: process.poll() is not None or
                 call(base + "/edgebook/api/health", headers=auth, timeout=5)[0] in ready,
                 timeout=120, what="the server and its gateway")
        assert process.poll() is None, (root / "jupyter.log").read_text()
        yield {"base": base, "auth": auth, "root": root, "process": process}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with jupyter_server(tmp_path_factory.mktemp("jupyter-root")) as running:
        yield running


def test_routes_need_jupyter_auth(server):
    base = server["base"]
    assert call(base + "/edgebook/api/endpoints")[0] == 403
    assert call(base + "/edgebook/api/endpoints", headers={"Authorization": "token nope"})[0] == 403
    assert call(base + "/edgebook/api/endpoints/x", method="PUT", body={})[0] == 403
    assert call(base + "/edgebook/api/events")[0] == 403
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(base + "/edgebook/proxy/hello", timeout=10)
    caught.value.close()
    assert caught.value.code in (302, 403)  # GET redirects to the login page
    # a cookie without the XSRF token does not pass for an unsafe method
    status, _, _ = call(base + "/edgebook/api/endpoints/x", method="DELETE",
                        headers={"Cookie": "_xsrf=abc"})
    assert status == 403


def test_a_logged_in_browser_is_protected_from_other_origins(server):
    """With the login cookie a browser holds: same-origin works, another origin does not."""
    import http.cookiejar
    base = server["base"]
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    browser.open(base + "/login", timeout=10).close()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"_xsrf": xsrf, "password": TOKEN}).encode()
    try:
        browser.open(urllib.request.Request(base + "/login?next=%2F", data=form), timeout=10)
    except urllib.error.HTTPError as redirect:  # 302 to next, with the login cookie set
        redirect.close()
        assert redirect.code == 302
    assert any(c.name.startswith("username-") for c in jar)

    def get(path, **headers):
        request = urllib.request.Request(base + path, headers=headers)
        try:
            with browser.open(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code

    assert get("/edgebook/api/health") == 200
    assert get("/edgebook/api/health", Origin=base) == 200
    assert get("/edgebook/api/health", Origin="http://evil.example") == 404
    # an unsafe method from another origin fails even with the XSRF token in hand
    request = urllib.request.Request(base + "/edgebook/api/endpoints/x", method="DELETE",
                                     headers={"Origin": "http://evil.example",
                                              "X-XSRFToken": xsrf})
    with pytest.raises(urllib.error.HTTPError) as refused:
        browser.open(request, timeout=10)
    refused.value.close()
    assert refused.value.code in (403, 404)


def test_the_admin_page_is_served_behind_jupyters_login(server):
    base, auth = server["base"], server["auth"]
    request = urllib.request.Request(base + "/edgebook/admin/", headers=auth)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert b"<title>edgebook admin</title>" in response.read()
        cookies = response.headers.get_all("Set-Cookie") or []
    assert any(c.startswith("_xsrf=") for c in cookies)  # for the page's unsafe calls
    status, headers, body = call(base + "/edgebook/admin/admin.js", headers=auth)
    assert status == 200 and "javascript" in headers.get("Content-Type", "")
    for path in ("/edgebook/admin/..%2Fapi%2Fendpoints", "/edgebook/admin/x/y.js"):
        assert call(base + path, headers=auth)[0] == 404, path
    opener = urllib.request.build_opener(NoRedirect)
    for path, headers in (("/edgebook/admin/", {}),
                          ("/edgebook/admin/", {"Authorization": "token nope"}),
                          ("/edgebook/admin", {})):
        with pytest.raises(urllib.error.HTTPError) as caught:  # to the login page, or admin/
            opener.open(urllib.request.Request(base + path, headers=headers), timeout=10)
        caught.value.close()
        assert caught.value.code in (301, 302), path
        assert "login" in caught.value.headers["Location"] or \
            caught.value.headers["Location"] == "admin/"


def test_admin_api_deploy_and_proxy_with_the_token(server):
    base, auth = server["base"], server["auth"]
    status, _, body = call(base + "/edgebook/api/health", headers=auth)
    assert status == 200 and json.loads(body)["ok"] is True
    status, _, body = call(base + "/edgebook/api/endpoints/hello", method="PUT", headers=auth,
                           body={"method": "GET", "path": "/hello", "source": HELLO})
    assert status in (200, 201), body
    assert json.loads(body)["endpoint"]["state"] == "running"
    status, headers, body = call(base + "/edgebook/proxy/hello?x=1", headers=auth)
    assert status == 200, body
    assert json.loads(body) == {"message": "Hello, World!", "path": "/hello", "method": "GET"}
    assert headers.get("X-Request-Id")
    status, _, body = call(base + "/edgebook/proxy/nowhere", headers=auth)
    assert status == 404 and json.loads(body)["error_type"] == "not_found"
    status, _, body = call(base + "/edgebook/api/endpoints/nope", headers=auth)
    assert status == 404 and json.loads(body)["error_type"] == "not_found"
    # the gateway is also reachable on its own port, as the runtime file says
    info = read_runtime(str(server["root"] / ".edgebook"))
    status, _, _ = call(info.url + "/hello")
    assert status == 200
    # a handler's cookies never land on Jupyter's origin
    baker = ('use rust_edge_gateway_sdk::prelude::*;\n'
             'fn handle(_req: Request) -> Response {\n'
             '    Response::ok(json!({})).with_header("Set-Cookie", "_xsrf=forged; Path=/")\n'
             '}\n')
    status, _, body = call(base + "/edgebook/api/endpoints/baker", method="PUT", headers=auth,
                           body={"method": "GET", "path": "/baker", "source": baker})
    assert status in (200, 201), body
    status, headers, _ = call(base + "/edgebook/proxy/baker", headers=auth)
    assert status == 200 and "forged" not in headers.get("Set-Cookie", "")
    status, headers, _ = call(info.url + "/baker")
    assert status == 200 and headers.get("Set-Cookie") == "_xsrf=forged; Path=/"


def test_event_stream_is_proxied(server):
    base, auth = server["base"], server["auth"]
    req = urllib.request.Request(base + "/edgebook/api/events",
                                 headers={**auth, "Accept": "text/event-stream"})
    with urllib.request.urlopen(req, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = []
        for raw in response:
            lines.append(raw.decode())
            if raw.startswith(b"data:"):
                break
    assert json.loads(lines[-1][5:])["type"] == "hello"


def test_kernels_are_told_where_the_gateway_is(server):
    base, auth = server["base"], server["auth"]
    status, _, body = call(base + "/api/kernels", method="POST", headers=auth, body={})
    assert status == 201
    kernel = json.loads(body)["id"]
    outputs = []
    try:
        from jupyter_client import BlockingKernelClient
        runtime = server["root"] / ".runtime"
        connection = runtime / f"kernel-{kernel}.json"
        wait_for(connection.exists, what="the kernel's connection file")
        client = BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            reply = client.execute_interactive(
                "import os; print(os.environ['EDGEBOOK_DATA_DIR'], "
                "os.environ['EDGEBOOK_PROXY_BASE'])", timeout=60,
                output_hook=lambda msg: outputs.append(msg))
        finally:
            client.stop_channels()
    finally:
        call(base + f"/api/kernels/{kernel}", method="DELETE", headers=auth)
    text = "".join(m["content"].get("text", "") for m in outputs
                   if m["msg_type"] == "stream")
    assert reply["content"]["status"] == "ok"
    assert text.split() == [str(server["root"] / ".edgebook"), "/edgebook/proxy"]


def test_dead_gateway_is_restarted(server):
    data_dir = str(server["root"] / ".edgebook")
    first = find_live(data_dir)
    os.kill(first.pid, signal.SIGKILL)  # started (indirectly) by this test's server
    second = wait_for(lambda: (info := find_live(data_dir)) and info.pid != first.pid and info,
                      timeout=60, what="a new gateway")
    assert pid_alive(second.pid)
    # the extension picks the new gateway up, which restored the endpoint from its binary
    answers = []
    try:
        wait_for(lambda: answers.append(call(server["base"] + "/edgebook/proxy/hello",
                                             headers=server["auth"])) or answers[-1][0] == 200,
                 timeout=30, what="the proxy to reach the new gateway")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answer {answers[-1]}") from None
    assert json.loads(answers[-1][2])["message"] == "Hello, World!"


def test_gateway_stops_with_the_server(server):
    data_dir = str(server["root"] / ".edgebook")
    info = find_live(data_dir)
    process = server["process"]
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    wait_for(lambda: not pid_alive(info.pid), timeout=30, what="the gateway to stop")


def test_a_gateway_that_was_running_before_is_left_running(tmp_path):
    data_dir = str(tmp_path / ".edgebook")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    gateway = subprocess.Popen([sys.executable, "-m", "edgebook", "serve", "--data-dir",
                                data_dir, "--port", "0"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        info = wait_for(lambda: find_live(data_dir), timeout=60, what="the gateway")
        assert info.pid == gateway.pid
        with jupyter_server(tmp_path) as running:
            status, _, _ = call(running["base"] + "/edgebook/api/health",
                                headers=running["auth"])
            assert status == 200
        assert gateway.poll() is None
        assert find_live(data_dir).pid == gateway.pid
    finally:
        gateway.terminate()
        gateway.wait(30)



def test_a_gateway_that_cannot_start_is_reported_not_restarted_for_ever(tmp_path):
    # a list option on the command line: the option once per item (as docs/notebook.md says)
    with jupyter_server(tmp_path, "--EdgebookExtension.serve_args=--openapi-path",
                        "--EdgebookExtension.serve_args=bad",
                        "--EdgebookExtension.startup_timeout=20", ready=(503,)) as running:
        def failed():
            status, _, body = call(running["base"] + "/edgebook/api/health",
                                   headers=running["auth"], timeout=5)
            return status == 503 and json.loads(body)["error_type"] == "gateway_failed" \
                and json.loads(body)
        body = wait_for(failed, timeout=120, what="the extension to give up")
        assert "--openapi-path must start with '/'" in body["error"]
        log = (tmp_path / "jupyter.log").read_text()
        assert "giving up on the gateway" in log and "not ours" not in log


def test_a_remote_gateway_is_driven_and_none_is_started(tmp_path):
    data_dir = str(tmp_path / "elsewhere" / ".edgebook")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    gateway = subprocess.Popen([sys.executable, "-m", "edgebook", "serve", "--data-dir",
                                data_dir, "--port", "0"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "notebooks"
    root.mkdir()
    try:
        info = wait_for(lambda: find_live(data_dir), timeout=60, what="the remote gateway")
        remote = [f"--EdgebookExtension.admin_url={info.admin_url}",
                  f"--EdgebookExtension.admin_token={info.token}"]
        with jupyter_server(root, *remote) as running:  # no data-plane URL yet
            base, auth = running["base"], running["auth"]
            status, _, body = call(base + "/edgebook/api/health", headers=auth)
            assert status == 200 and json.loads(body)["url"] == info.url
            status, _, body = call(base + "/edgebook/api/services/notes", method="PUT",
                                   headers=auth, body={"kind": "sqlite",
                                                       "config": {"path": "notes.sqlite3"}})
            assert status in (200, 201), body
            names = [s["name"] for s in AdminClient(info.admin_url, info.token).services()]
            assert "notes" in names  # it went to the remote gateway
            status, _, body = call(base + "/edgebook/proxy/nothing", headers=auth)
            assert status == 503 and json.loads(body)["error_type"] == "not_configured"
        with jupyter_server(root, *remote, f"--EdgebookExtension.url={info.url}") as running:
            status, _, body = call(running["base"] + "/edgebook/proxy/nothing",
                                   headers=running["auth"])
            assert status == 404 and json.loads(body)["error_type"] == "not_found"
        assert not (root / ".edgebook").exists()  # no local gateway was started
        assert find_live(data_dir).pid == gateway.pid  # and the remote one was left alone
    finally:
        gateway.terminate()
        gateway.wait(30)
