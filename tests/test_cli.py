"""The ``edgebook`` command as users run it: real processes on loopback.

Tests marked ``cargo`` compile real Rust handlers (they share the cargo target dir, so
after the first build each one is an incremental compile of one small crate).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from edgebook.runtime import RuntimeInfo, read_runtime, write_runtime

HAVE_CARGO = shutil.which("cargo") is not None and shutil.which("rustc") is not None
cargo = pytest.mark.skipif(not HAVE_CARGO, reason="cargo and rustc are needed")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HELLO = """fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path}))
}
"""
SLOW = """fn handle(req: Request) -> Response {
    std::thread::sleep(std::time::Duration::from_millis(1500));
    Response::ok(json!({"slow": true}))
}
"""
BROKEN = """fn handle(req: Request) -> Response {
    let x: u32 = "nope";
    Response::ok(json!({}))
}
"""


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("EDGEBOOK_DATA_DIR", None)
    return e


def edgebook(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgebook", *args], capture_output=True,
                          text=True, env=env(), cwd=cwd, timeout=timeout)


class Server:
    """``edgebook serve`` in the background, stopped with SIGTERM."""

    def __init__(self, data_dir, *extra):
        self.data_dir = str(data_dir)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgebook", "serve", "--data-dir", self.data_dir,
             "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env())
        self.banner = self.process.stdout.readline()  # printed once it listens
        assert "serving" in self.banner, self.process.stderr.read()
        self.info = read_runtime(self.data_dir)
        assert self.info.pid == self.process.pid

    def terminate(self, timeout=60) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process.stdout.close()
        self.process.stderr.close()
        return code

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def server_factory():
    servers = []

    def make(data_dir, *extra):
        server = Server(data_dir, *extra)
        servers.append(server)
        return server
    yield make
    for server in servers:
        if server.process.returncode is None:
            server.kill()


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def status_of(url, timeout=30) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def read(path) -> str:
    with open(path) as handle:
        return handle.read()


def children(pid) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(p) for p in handle.read().split()]


# -- without cargo ---------------------------------------------------------------------------

def test_commands_without_a_gateway_say_so(tmp_path):
    (tmp_path / "h.rs").write_text(HELLO)
    result = edgebook("deploy", str(tmp_path / "h.rs"), "--route", "GET /h",
                      "--data-dir", str(tmp_path / "dd"))
    assert result.returncode == 1
    assert "no edgebook gateway is running" in result.stderr
    assert "edgebook serve" in result.stderr
    assert edgebook("status", "--data-dir", str(tmp_path / "dd")).returncode == 1


def test_bad_route_is_a_usage_error(tmp_path):
    (tmp_path / "h.rs").write_text(HELLO)
    result = edgebook("deploy", str(tmp_path / "h.rs"), "--route", "/h",
                      "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "GET /path" in result.stderr


def test_a_stale_runtime_file_is_ignored_and_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_runtime(str(tmp_path), RuntimeInfo(url="http://127.0.0.1:1", admin_url="http://127.0.0.1:1",
                                             token="t", pid=dead.pid, version="0", started=0))
    result = edgebook("status", "--data-dir", str(tmp_path))
    assert result.returncode == 1 and "no edgebook gateway is running" in result.stderr
    assert not (tmp_path / "runtime.json").exists()


def test_serve_publishes_a_private_runtime_file_and_exits_cleanly(tmp_path, server_factory):
    server = server_factory(tmp_path / "dd")
    path = tmp_path / "dd" / "runtime.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert server.info.url in server.banner and server.info.admin_url in server.banner
    result = edgebook("status", "--data-dir", server.data_dir)
    assert result.returncode == 0 and "no endpoints" in result.stdout
    again = edgebook("serve", "--data-dir", server.data_dir, "--port", "0")
    assert again.returncode == 1 and "already running" in again.stderr
    # the data plane never serves admin routes
    assert status_of(server.info.url + "/api/health") == 404
    assert server.terminate() == 0
    assert not path.exists()


# -- with cargo ------------------------------------------------------------------------------

@cargo
def test_serve_deploy_and_curl_a_real_handler(tmp_path, server_factory):
    server = server_factory(tmp_path / "dd")
    (tmp_path / "hello.rs").write_text(HELLO)
    result = edgebook("deploy", "hello.rs", "--route", "GET /hello", "--data-dir",
                      server.data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip().splitlines()[-1].split()[-1]
    assert url == server.info.url + "/hello"
    assert get(url) == (200, {"message": "Hello, World!", "path": "/hello"})

    (tmp_path / "broken.rs").write_text(BROKEN)
    result = edgebook("deploy", "broken.rs", "--route", "GET /hello", "--name", "hello",
                      "--data-dir", server.data_dir, cwd=tmp_path)
    assert result.returncode == 1
    assert "mismatched types" in result.stderr and "broken.rs:2:" in result.stderr
    assert 'let x: u32 = "nope";' in result.stderr
    assert "revision 1 keeps serving" in result.stderr
    assert get(url)[0] == 200

    status = edgebook("status", "--data-dir", server.data_dir)
    assert "build_failed" in status.stdout
    assert edgebook("stop", "hello", "--data-dir", server.data_dir).returncode == 0
    assert status_of(url) == 503
    assert edgebook("start", "hello", "--data-dir", server.data_dir).returncode == 0
    assert get(url)[0] == 200
    logs = edgebook("logs", "hello", "--data-dir", server.data_dir)
    assert "serving" in logs.stdout
    assert edgebook("rm", "hello", "--data-dir", server.data_dir).returncode == 0
    assert status_of(url) == 404
    assert server.terminate() == 0


@cargo
def test_restart_restores_endpoints_without_recompiling(tmp_path, server_factory):
    data_dir = tmp_path / "dd"
    server = server_factory(data_dir)
    (tmp_path / "hello.rs").write_text(HELLO)
    assert edgebook("deploy", "hello.rs", "--route", "GET /hello", "--data-dir",
                    str(data_dir), cwd=tmp_path).returncode == 0
    assert server.terminate() == 0
    # Without its workspace a rebuild would have to regenerate it: a restore must not.
    shutil.rmtree(data_dir / "workspace", ignore_errors=True)
    server = server_factory(data_dir)
    status, body = get(server.info.url + "/hello")
    assert status == 200 and body["message"] == "Hello, World!"
    revisions = json.loads(urllib.request.urlopen(urllib.request.Request(
        server.info.admin_url + "/api/endpoints/hello/revisions",
        headers={"Authorization": f"Bearer {server.info.token}"})).read())["revisions"]
    assert len(revisions) == 1
    assert not (data_dir / "workspace").exists() or not any((data_dir / "workspace").iterdir())
    assert server.terminate() == 0


@cargo
def test_sigterm_drains_an_inflight_request(tmp_path, server_factory):
    server = server_factory(tmp_path / "dd")
    (tmp_path / "slow.rs").write_text(SLOW)
    assert edgebook("deploy", "slow.rs", "--route", "GET /slow", "--data-dir",
                    server.data_dir, cwd=tmp_path).returncode == 0
    workers = children(server.process.pid)
    assert workers
    outcome = {}

    def request():
        outcome["response"] = get(server.info.url + "/slow")

    thread = threading.Thread(target=request)
    thread.start()
    time.sleep(0.5)  # the request is in the worker (it sleeps 1.5 s)
    assert server.terminate() == 0
    thread.join(10)
    assert outcome["response"] == (200, {"slow": True})
    assert not (tmp_path / "dd" / "runtime.json").exists()
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or \
            read(f"/proc/{pid}/stat").split()[2] == "Z"


@cargo
def test_processes_2_serves_every_endpoint_from_both_processes(tmp_path, server_factory):
    server = server_factory(tmp_path / "dd", "--processes", "2")
    (tmp_path / "hello.rs").write_text(HELLO)
    assert edgebook("deploy", "hello.rs", "--route", "GET /hello", "--data-dir",
                    server.data_dir, cwd=tmp_path).returncode == 0
    gateways = [server.process.pid] + [
        pid for pid in children(server.process.pid)
        if "_follow" in read(f"/proc/{pid}/cmdline")]
    assert len(gateways) == 2
    for pid in gateways:  # each gateway process runs its own worker of the endpoint
        assert any("_follow" not in read(f"/proc/{c}/cmdline") for c in children(pid))
    for _ in range(20):
        assert get(server.info.url + "/hello")[0] == 200
    assert edgebook("rm", "hello", "--data-dir", server.data_dir).returncode == 0
    for _ in range(10):
        assert status_of(server.info.url + "/hello") == 404
    assert server.terminate() == 0
    for pid in gateways[1:]:
        assert not os.path.exists(f"/proc/{pid}")


def test_service_add_list_test_rm(tmp_path):
    server = Server(tmp_path / ".edgebook")
    try:
        data = ["--data-dir", server.data_dir]
        added = edgebook("service", "add", "pets", "sqlite", "services/pets.sqlite3",
                         "pool_size=2", *data)
        assert added.returncode == 0, added.stderr
        assert '"pool_size": 2' in added.stdout
        listed = edgebook("service", "list", *data)
        assert listed.returncode == 0
        names = [line.split()[0] for line in listed.stdout.splitlines()]
        assert "pets" in names and "default" in names
        tested = edgebook("service", "test", "pets", *data)
        assert tested.returncode == 0 and "pets: ok" in tested.stdout, tested.stdout
        bad = edgebook("service", "add", "cache", "redis", "redis://a", "redis://b", *data)
        assert bad.returncode == 2 and "give a URL once" in bad.stderr
        refused = edgebook("service", "add", "db", "postgres", "port=notanumber", *data)
        assert refused.returncode == 1 and "port" in refused.stderr
        removed = edgebook("service", "rm", "pets", *data)
        assert removed.returncode == 0
        assert "pets" not in edgebook("service", "list", *data).stdout
    finally:
        server.terminate()
