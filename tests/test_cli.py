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

from edgebook.discovery import RuntimeInfo, find_live, pid_alive, read_runtime, write_runtime

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
def test_serve_says_where_the_admin_page_is_and_sends_server_timing_when_asked(
        tmp_path, server_factory):
    server = server_factory(tmp_path / "dd", "--server-timing")
    page = server.process.stdout.readline()
    isolation = server.process.stdout.readline()
    assert f"admin page {server.info.admin_url}/admin/" in page and "runtime.json" in page
    assert isolation.startswith("edgebook: isolation: ")
    assert "workers " in isolation and "builds " in isolation
    # the banner says what /api/health reports
    from edgebook.client import AdminClient
    from edgebook.sandbox import describe_isolation
    health = AdminClient(server.info.admin_url, server.info.token).health()
    assert isolation.strip() == "edgebook: " + describe_isolation(health["isolation"])
    (tmp_path / "hello.rs").write_text(HELLO)
    result = edgebook("deploy", "hello.rs", "--route", "GET /hello", "--data-dir",
                      server.data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with urllib.request.urlopen(server.info.url + "/hello", timeout=30) as response:
        timing = response.headers.get("Server-Timing")  # no token asked for it
    assert timing and "worker;dur=" in timing and "total;dur=" in timing


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
    # another file on the same route, without --name: updates hello, no second endpoint
    (tmp_path / "greeting.rs").write_text(HELLO)
    result = edgebook("deploy", "greeting.rs", "--route", "GET /hello", "--data-dir",
                      server.data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "GET /hello is endpoint hello's route: updating hello" in result.stderr
    assert "greeting" not in edgebook("status", "--data-dir", server.data_dir).stdout
    # a deploy that moves an endpoint to another route says so
    result = edgebook("deploy", "hello.rs", "--route", "GET /hello2", "--data-dir",
                      server.data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note: endpoint hello moves from GET /hello to GET /hello2" in result.stderr
    result = edgebook("deploy", "hello.rs", "--route", "GET /hello", "--data-dir",
                      server.data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # a notebook cell saved as a file, its %%rust_handler line included
    (tmp_path / "cell.rs").write_text("%%rust_handler GET /hello --workers 2\n" + HELLO)
    result = edgebook("deploy", "cell.rs", "--route", "GET /cell", "--data-dir",
                      server.data_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note: cell.rs: ignoring its first line (%%rust_handler GET /hello --workers 2)" \
        in result.stderr
    assert get(server.info.url + "/cell")[0] == 200
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
    # the admin API counts every process's requests, not only the primary's share
    metrics = json.loads(urllib.request.urlopen(urllib.request.Request(
        server.info.admin_url + "/api/endpoints/hello/metrics",
        headers={"Authorization": f"Bearer {server.info.token}"})).read())["metrics"]
    assert (metrics["requests"], metrics["processes"]) == (20, 2), metrics
    assert metrics["latency_ms"]["window"] == 20
    lines = json.loads(urllib.request.urlopen(urllib.request.Request(
        server.info.admin_url + "/api/endpoints/hello/logs",
        headers={"Authorization": f"Bearer {server.info.token}"})).read())["lines"]
    served = [line for line in lines if line["text"].endswith("is serving")]
    assert sorted(line["process"] for line in served) == [0, 1], lines
    assert all("seq" not in line for line in lines if line["process"] == 1)  # per process
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
        closed = free_port()  # nothing listens there: the cause is shown, not just a verdict
        assert edgebook("service", "add", "gone", "redis", f"redis://127.0.0.1:{closed}",
                        *data).returncode == 0
        tested = edgebook("service", "test", "gone", *data)
        assert tested.returncode == 1 and "gone: not reachable" in tested.stdout
        cause = f"cause: redis service 'gone' at redis://127.0.0.1:{closed}: Error 111"
        assert cause in tested.stdout, tested.stdout
        bad = edgebook("service", "add", "cache", "redis", "redis://a", "redis://b", *data)
        assert bad.returncode == 2 and "give a URL once" in bad.stderr
        refused = edgebook("service", "add", "db", "postgres", "port=notanumber", *data)
        assert refused.returncode == 1 and "port" in refused.stderr
        removed = edgebook("service", "rm", "pets", *data)
        assert removed.returncode == 0
        assert "pets" not in edgebook("service", "list", *data).stdout
    finally:
        server.terminate()


# -- one port, one gateway; every gateway of the user ------------------------------------------

def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gateways_dir(tmp_path, monkeypatch):
    directory = tmp_path / "gateways"
    monkeypatch.setenv("EDGEBOOK_GATEWAYS_DIR", str(directory))
    return directory


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_second_gateway_on_a_taken_port_refuses_and_names_the_first(
        tmp_path, server_factory, gateways_dir, processes):
    port = free_port()
    first = server_factory(tmp_path / "one", "--port", str(port), "--processes", processes)
    assert first.info.url.endswith(f":{port}")
    second = edgebook("serve", "--data-dir", str(tmp_path / "two"), "--port", str(port),
                      "--processes", processes, timeout=60)
    assert second.returncode == 1
    assert f"port {port} is taken by another edgebook gateway" in second.stderr
    assert str(tmp_path / "one") in second.stderr
    assert read_runtime(str(tmp_path / "two")) is None
    # every request still reaches the first gateway
    for _ in range(10):
        assert status_of(first.info.url + "/nothing-here") == 404
    assert first.terminate() == 0


def test_a_foreign_server_on_the_port_is_named_as_such(tmp_path, gateways_dir):
    import socket
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = edgebook("serve", "--data-dir", str(tmp_path / "dd"), "--port", str(port),
                          timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_gateways_lists_every_gateway_and_stop_gateway_stops_one(
        tmp_path, server_factory, gateways_dir):
    assert edgebook("gateways").stdout.strip() == "no gateway is running"
    one = server_factory(tmp_path / "one")
    two = server_factory(tmp_path / "two", "--started-by", "a test")
    listed = edgebook("gateways").stdout
    for server in (one, two):
        assert str(server.info.pid) in listed and server.data_dir in listed
        assert server.info.url in listed and server.info.admin_url in listed
    assert "a test" in listed and "edgebook serve" in listed
    stopped = edgebook("stop-gateway", "--pid", str(two.info.pid))
    assert stopped.returncode == 0, stopped.stderr
    assert two.process.wait(10) == 0
    two.kill()  # closes its pipes
    assert str(two.info.pid) not in edgebook("gateways").stdout
    stopped = edgebook("stop-gateway", "--data-dir", one.data_dir)
    assert stopped.returncode == 0 and one.process.wait(10) == 0
    one.kill()
    assert edgebook("stop-gateway", "--data-dir", one.data_dir).returncode == 1
    assert os.listdir(gateways_dir) == []


def test_a_dead_gateways_note_is_pruned(tmp_path, gateways_dir):
    from edgebook.discovery import GatewayNote, list_gateways, register_gateway
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    register_gateway(GatewayNote(pid=int(dead), data_dir="/x", url="http://127.0.0.1:1",
                                 admin_url="http://127.0.0.1:2", started_by="t", started=0))
    assert list_gateways() == []
    assert os.listdir(gateways_dir) == []


def test_serve_idle_exit_ends_a_gateway_without_traffic(tmp_path, server_factory,
                                                       gateways_dir):
    server = server_factory(tmp_path / "dd", "--idle-exit", "1.5")
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:  # traffic keeps it alive
        assert status_of(server.info.url + "/nothing") == 404
        time.sleep(0.2)
    assert server.process.poll() is None
    assert server.process.wait(30) == 0
    assert "idle for" in server.process.stdout.read()
    server.kill()
    assert read_runtime(server.data_dir) is None
    assert os.listdir(gateways_dir) == []


def test_status_into_a_closed_pipe_prints_no_traceback(tmp_path, server_factory):
    server = server_factory(tmp_path / "dd")
    command = (f"{sys.executable} -m edgebook status --data-dir {server.data_dir} "
               "| head -c 1 >/dev/null")
    for _ in range(3):
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                              env=env(), timeout=60)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_a_command_right_after_serve_waits_for_the_starting_gateway(tmp_path):
    """`serve --processes 2` takes a while to write its runtime file (its follower starts
    first); a client command in that window waits for it instead of saying none runs."""
    data_dir = str(tmp_path / ".edgebook")
    process = subprocess.Popen(
        [sys.executable, "-m", "edgebook", "serve", "--data-dir", data_dir, "--port", "0",
         "--processes", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        deadline = time.monotonic() + 30
        marker = os.path.join(data_dir, "starting.pid")
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.path.exists(marker) and read_runtime(data_dir) is None  # still starting
        status = edgebook("status", "--data-dir", data_dir)
        assert status.returncode == 0, status.stderr
        assert not os.path.exists(marker)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def test_a_remote_gateway_is_managed_through_its_admin_url_and_token(tmp_path, server_factory,
                                                                      monkeypatch):
    """EDGEBOOK_ADMIN_URL, EDGEBOOK_ADMIN_TOKEN and EDGEBOOK_URL point the CLI and the
    notebook API at a gateway that is not in any local data dir (one on Kubernetes)."""
    server = server_factory(tmp_path / "far")
    (tmp_path / "hello.rs").write_text(HELLO)
    elsewhere = str(tmp_path / "empty")  # no gateway here: without the variables, an error
    assert edgebook("status", "--data-dir", elsewhere).returncode != 0
    remote = {"EDGEBOOK_ADMIN_URL": server.info.admin_url,
              "EDGEBOOK_ADMIN_TOKEN": server.info.token, "EDGEBOOK_URL": server.info.url}
    run_env = {**env(), **remote}
    done = subprocess.run([sys.executable, "-m", "edgebook", "deploy", "hello.rs", "--route",
                           "GET /hello", "--data-dir", elsewhere], capture_output=True,
                          text=True, env=run_env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith(server.info.url + "/hello")
    wrong = subprocess.run([sys.executable, "-m", "edgebook", "status", "--data-dir", elsewhere],
                           capture_output=True, text=True, timeout=60,
                           env={**run_env, "EDGEBOOK_ADMIN_TOKEN": "wrong"})
    assert wrong.returncode != 0 and "token" in wrong.stderr.lower()
    for name, value in remote.items():
        monkeypatch.setenv(name, value)
    import edgebook as api
    from edgebook.notebook import session as sessions
    monkeypatch.setattr(sessions, "_current", None)
    found = sessions.Session.from_data_dir(elsewhere)
    assert found.data_url == server.info.url and found.admin is not None
    assert [e["name"] for e in found.admin.endpoints()] == ["hello"]
    connected = api.connect(admin_url=server.info.admin_url, token=server.info.token)
    assert api.request("GET", "/hello", session=connected).json()["message"] == \
        "Hello, World!"
    assert not os.path.exists(elsewhere)  # nothing was started or written locally


@cargo
def test_deploy_start_announces_the_gateway_it_started_and_how_to_stop_it(tmp_path):
    import re as regex

    data_dir = tmp_path / "dd"
    (tmp_path / "hello.rs").write_text(HELLO)
    result = edgebook("deploy", "hello.rs", "--route", "GET /hello", "--data-dir",
                      str(data_dir), "--start", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = read_runtime(str(data_dir))
    try:
        line = next(l for l in result.stderr.splitlines() if "background gateway" in l)
        assert f"(pid {info.pid})" in line and info.url in line and info.admin_url in line
        assert "it keeps running" in line and "'edgebook gateways'" in line
        stop = regex.search(r"'(edgebook stop-gateway --pid \d+)'", line).group(1)
        assert get(info.url + "/hello")[0] == 200
        # a second deploy reuses that gateway and announces nothing
        again = edgebook("deploy", "hello.rs", "--route", "GET /hello", "--data-dir",
                         str(data_dir), "--start", cwd=tmp_path)
        assert again.returncode == 0 and "background gateway" not in again.stderr
        stopped = edgebook(*stop.split()[1:])  # the command it named
        assert stopped.returncode == 0, stopped.stderr
        assert find_live(str(data_dir)) is None and not pid_alive(info.pid)
    finally:
        if pid_alive(info.pid):
            os.kill(info.pid, signal.SIGTERM)
