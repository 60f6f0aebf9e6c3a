"""Lifecycle faults: crash loops, a revision that fails to boot during hot reload, the
gateway stopped by SIGTERM or killed by SIGKILL, and a registry that is locked or full
during a deploy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from edgebook.errors import GatewayError
from edgebook.gateway.pool import EndpointConfig, RestartPolicy
from edgebook.discovery import read_runtime
from edgebook.gateway.supervisor import DeployError, Supervisor
from fault_helpers import GatewayProcess, build_handlers, pid_alive

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    return build_handlers(tmp_path_factory.mktemp("lifecycle-build"),
                          ("handlers/faults_raw.rs", "hello_handler.rs"))


def request(path: str = "/raw/ok") -> dict:
    return {"type": "request", "request_id": os.urandom(8).hex(), "method": "GET",
            "path": path, "query": {}, "headers": {}, "params": {"mode": "ok"},
            "body": None, "client_ip": "127.0.0.1"}


def config(**extra) -> EndpointConfig:
    return EndpointConfig(name="raw", method="GET", path="/raw/{mode}", timeout=2.0, **extra)


def test_crash_loop_backs_off_without_spawning_per_request_and_recovers(binaries):
    raw = binaries["handlers/faults_raw.rs"]
    policy = RestartPolicy(backoff_base=0.01, backoff_cap=0.05, crash_loop_deaths=3,
                           crash_loop_retry=30.0)

    async def main():
        supervisor = Supervisor(policy=policy)
        try:
            await supervisor.deploy(config(env={"FAULT_AT_START": "after_ready"}), [raw], "1")
            started = time.monotonic()
            while supervisor.state("raw")["state"] != "crash_looping":
                assert time.monotonic() - started < 10, supervisor.state("raw")
                await asyncio.sleep(0.02)
            detected = time.monotonic() - started
            spawned = supervisor.state("raw")["spawned"]
            for _ in range(50):
                with pytest.raises(GatewayError) as info:
                    await supervisor.handle("raw", request())
                assert info.value.status == 503 and info.value.error_type == "crash_looping"
                assert 1 <= int(info.value.headers["Retry-After"]) <= 30
            assert supervisor.state("raw")["spawned"] == spawned  # nothing spawned per request
            recovered = time.monotonic()
            await supervisor.deploy(config(), [raw], "2")
            response = await supervisor.handle("raw", request())
            assert response["status"] == 200
            assert supervisor.state("raw")["state"] == "running"
            print(f"\ncrash loop detected after {detected * 1000:.0f} ms ({spawned} spawns); "
                  f"good deploy served after {(time.monotonic() - recovered) * 1000:.0f} ms")
        finally:
            await supervisor.shutdown(drain_timeout=1)

    asyncio.run(main())


def test_a_revision_that_fails_to_boot_leaves_the_old_one_serving(binaries):
    raw = binaries["handlers/faults_raw.rs"]

    async def main():
        supervisor = Supervisor()
        try:
            await supervisor.deploy(config(workers=2), [raw], "1")
            statuses = []
            stop = asyncio.Event()

            async def load():
                while not stop.is_set():
                    statuses.append((await supervisor.handle("raw", request()))["status"])

            loaders = [asyncio.ensure_future(load()) for _ in range(4)]
            with pytest.raises(DeployError) as info:
                await supervisor.deploy(config(workers=2, env={"FAULT_AT_START": "before_ready"}),
                                        [raw], "2")
            assert "before sending its ready frame" in info.value.reason
            assert any("exiting before the ready frame" in line
                       for line in info.value.stderr_tail)
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*loaders)
            assert statuses and set(statuses) == {200}
            state = supervisor.state("raw")
            assert (state["state"], state["revision"]) == ("running", "1")
            assert state["deploy_error"]["revision"] == "2"
        finally:
            await supervisor.shutdown(drain_timeout=1)

    asyncio.run(main())


def _worker_pids(gateway: GatewayProcess, n: int = 20) -> set[int]:
    return {gateway.get("/raw/ok")[1]["pid"] for _ in range(n)}


def test_sigterm_drains_and_no_worker_outlives_the_gateway(binaries):
    gateway = GatewayProcess([{"name": "raw", "method": "GET", "path": "/raw/{mode}",
                               "argv": [binaries["handlers/faults_raw.rs"]], "workers": 2}],
                             None)
    try:
        pids = _worker_pids(gateway)
        gateway.proc.send_signal(signal.SIGTERM)
        assert gateway.proc.wait(15) == 0
        assert not any(pid_alive(pid) for pid in pids)
    finally:
        gateway.stop()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _serve(data_dir) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("EDGEBOOK_DATA_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "edgebook", "serve", "--data-dir",
                             str(data_dir), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    banner = proc.stdout.readline()
    assert "serving" in banner, proc.stderr.read()
    return proc


def _get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def _admin(info, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(info.admin_url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {info.token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_sigkill_takes_the_workers_with_it_and_a_restart_is_clean(tmp_path, binaries):
    with open(os.path.join(ROOT, "tests", "resources", "hello_handler.rs")) as handle:
        hello = handle.read()
    first = _serve(tmp_path)
    try:
        info = read_runtime(str(tmp_path))
        code, body = _admin(info, "PUT", "/api/endpoints/hello",
                            {"method": "GET", "path": "/hello", "source": hello})
        assert code in (200, 201), body
        assert _get(info.url + "/hello")[0] == 200
        workers = _children(first.pid)
        assert workers
        first.kill()
        first.wait(10)
        deadline = time.monotonic() + 3
        while any(pid_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(pid_alive(p) for p in workers), "a worker outlived SIGKILL"
        killed_at = time.monotonic()
        assert os.path.exists(tmp_path / "runtime.json")  # stale: its pid is dead
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close()
        first.stderr.close()
    second = _serve(tmp_path)
    try:
        info2 = read_runtime(str(tmp_path))
        assert info2.pid == second.pid and info2.token != info.token
        status, body = _get(info2.url + "/hello")  # restored from the cached binary
        assert status == 200 and body["message"] == "Hello, World!"
        print(f"\nrestart after SIGKILL serving again {time.monotonic() - killed_at:.2f} s "
              "after the kill")
        code, listing = _admin(info2, "GET", "/api/endpoints/hello")
        assert code == 200 and listing.get("state") == "running", listing
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        second.stdout.close()
        second.stderr.close()


class _FullDisk:
    """A registry connection whose writes fail the way SQLite reports a full disk."""

    def __init__(self, db):
        self._db = db

    def execute(self, sql, *args):
        if sql.split()[0].upper() in ("BEGIN", "INSERT", "UPDATE", "DELETE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


@pytest.mark.parametrize("fault", ["locked", "disk_full"])
def test_a_deploy_against_a_locked_or_full_registry_fails_clearly_and_loses_nothing(
        tmp_path, fault):
    from tornado.httpclient import AsyncHTTPClient
    from control_plane_helpers import start_gateway, stop_gateway

    async def main():
        gateway, _, server, admin_url = await start_gateway(str(tmp_path / "dd"))
        http = AsyncHTTPClient(force_instance=True)
        headers = {"Authorization": "Bearer secret-token", "Content-Type": "application/json"}

        async def put(source):
            return await http.fetch(f"{admin_url}/api/endpoints/echo", method="PUT",
                                    headers=headers, raise_error=False, body=json.dumps(
                                        {"method": "GET", "path": "/echo", "source": source}))
        try:
            assert (await put("tag: one")).code in (200, 201)
            assert json.loads((await http.fetch(gateway.url + "/echo")).body)["tag"] == "one"
            with contextlib.ExitStack() as stack:
                if fault == "locked":
                    other = sqlite3.connect(gateway.config.registry_path, isolation_level=None)
                    stack.callback(other.close)
                    other.execute("BEGIN EXCLUSIVE")
                    stack.callback(other.execute, "ROLLBACK")
                else:
                    real = gateway.registry._db
                    gateway.registry._db = _FullDisk(real)
                    stack.callback(setattr, gateway.registry, "_db", real)
                response = await put("tag: two")
                body = json.loads(response.body)
                assert response.code == 503, body
                assert body["error_type"] == "registry_unavailable"
                word = "locked" if fault == "locked" else "full"
                assert word in body["error"], body
                # the running revision keeps serving while the registry is unusable
                assert json.loads((await http.fetch(gateway.url + "/echo")).body)["tag"] == "one"
            record = gateway.registry.get_endpoint("echo")
            assert record.source == "tag: one" and record.live_revision == 1
            assert (await put("tag: two")).code in (200, 201)  # and it works again after
            assert json.loads((await http.fetch(gateway.url + "/echo")).body)["tag"] == "two"
        finally:
            http.close()
            await stop_gateway(gateway, server)

    asyncio.run(main())
