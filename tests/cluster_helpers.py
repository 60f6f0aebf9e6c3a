"""Gateways of a scale-out deployment as separate processes on loopback, for the multi-node
battery (test_scaleout.py) and its benchmark (bench/scaleout_bench.py).

Each ``Node`` is one ``edgebook serve --registry postgresql://...`` process with its own data
dir, standing in for one machine. ``StoreGate`` sits between one node and the artifact store
(a TCP relay the test can close), so that one machine loses the store while others keep it.
``RoundRobin`` is a client that spreads requests over the nodes, each on a new connection,
retrying only a refused connection.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from edgebook.discovery import read_runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "scale-out-test-token"
with open(os.path.join(ROOT, "tests", "resources", "hello_handler.rs"), encoding="utf-8") as _f:
    HELLO = _f.read()


def handler(message: str) -> str:
    """The seed's hello handler answering ``message``: each deploy a new revision."""
    return HELLO.replace("Hello, World!", message)


def call(url: str, method: str = "GET", body=None, headers=None, timeout: float = 30.0):
    """(status, parsed JSON body or text, headers); never raises for an HTTP status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, got = response.read(), response.status, response.headers
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, exc.headers
        exc.close()
    try:
        return status, json.loads(raw), got
    except ValueError:
        return status, raw.decode(errors="replace"), got


class Node:
    """One gateway process (``role`` gateway, builder or all) with its own data dir."""

    def __init__(self, data_dir: str, dsn: str, artifacts: str, endpoint_url: str,
                 aws: dict[str, str], role: str = "gateway", port: int = 0):
        self.data_dir, self.dsn, self.artifacts = data_dir, dsn, artifacts
        self.endpoint_url, self.aws, self.role, self.port = endpoint_url, aws, role, port
        self.process: subprocess.Popen | None = None
        self.env: dict[str, str] = {}  # extra environment
        self.url = self.admin = ""
        self.log_path = os.path.join(data_dir + ".log")

    def start(self, wait_ready: bool = True, timeout: float = 120.0) -> Node:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.aws, EDGEBOOK_ADMIN_TOKEN=TOKEN, PYTHONPATH=ROOT, **self.env)
        env.pop("EDGEBOOK_DATA_DIR", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgebook", "serve", "--data-dir", self.data_dir,
                 "--port", str(self.port), "--admin-port", "0", "--registry", self.dsn,
                 "--artifacts", self.artifacts, "--artifacts-endpoint", self.endpoint_url,
                 "--role", self.role, "--drain-timeout", "10", "--log-level", "info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        info = None
        while info is None or info.pid != self.process.pid:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited at start:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{self.log()[-3000:]}")
            time.sleep(0.05)
            try:
                info = read_runtime(self.data_dir)
            except Exception:
                info = None
        self.url, self.admin = info.url, info.admin_url
        self.port = int(self.url.rsplit(":", 1)[1])
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def api(self, method: str, path: str, body=None, headers=None, timeout: float = 300.0):
        return call(self.admin + path, method, body,
                    {"Authorization": f"Bearer {TOKEN}", **(headers or {})}, timeout)

    def ready(self) -> tuple[int, dict]:
        try:
            status, body, _ = call(self.admin + "/readyz", timeout=5)
            return status, body
        except OSError as exc:
            return 0, {"reason": str(exc)}

    def wait_ready(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        while True:
            status, body = self.ready()
            if status == 200:
                return time.monotonic() - started
            if self.process.poll() is not None or time.monotonic() - started > timeout:
                raise AssertionError(f"not ready: {body}\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def get(self, path: str, timeout: float = 10.0):
        return call(self.url + path, timeout=timeout)

    def stats(self) -> dict:
        return self.api("GET", "/api/stats")[1]

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def wait_message(nodes, path: str, message: str, timeout: float) -> dict[str, float]:
    """Seconds until each node answers ``path`` with ``message``; AssertionError past
    ``timeout``."""
    started = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < len(nodes):
        for node in nodes:
            if node.url in seen:
                continue
            try:
                status, body, _ = node.get(path, timeout=2)
            except OSError:
                continue
            if status == 200 and isinstance(body, dict) and body.get("message") == message:
                seen[node.url] = time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"after {timeout} s only {sorted(seen)} answer {message!r}")
        time.sleep(0.01)
    return seen


class StoreGate:
    """A TCP relay to the artifact store that the test can close (the store is down for
    whoever goes through it) and open again."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            if not self.open:
                client.close()  # the store is down: every connection is cut at once
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()


class RoundRobin:
    """Requests spread over ``nodes`` in turn, each on a new connection, in a thread, until
    ``stop()``. A refused connection (a gateway that stopped listening) is retried on the
    next node; any other failure counts."""

    def __init__(self, nodes, path: str):
        self.nodes = list(nodes)
        self.path = path
        self.ok = self.failed = self.retried = 0
        self.failures: list[str] = []
        self.messages: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RoundRobin:
        self._thread.start()
        return self

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            for _attempt in range(len(self.nodes) * 2):
                node = self.nodes[index % len(self.nodes)]
                index += 1
                try:
                    status, body, _ = node.get(self.path, timeout=10)
                except urllib.error.URLError as exc:
                    if isinstance(exc.reason, ConnectionRefusedError):
                        self.retried += 1
                        continue
                    self.failed += 1
                    self.failures.append(f"{node.url}: {exc}")
                    break
                except OSError as exc:
                    self.failed += 1
                    self.failures.append(f"{node.url}: {exc}")
                    break
                if status == 200:
                    self.ok += 1
                    if isinstance(body, dict):
                        self.messages.add(body.get("message"))
                else:
                    self.failed += 1
                    self.failures.append(f"{node.url}: {status} {str(body)[:200]}")
                break

    def stop(self) -> RoundRobin:
        self._stop.set()
        self._thread.join(30)
        return self
