"""Helpers for the fault and lifecycle tests: real Rust fault handlers, a sandbox user,
a gateway process on loopback, and a steady load next to it."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import pwd
import subprocess
import sys
import threading
import time
from pathlib import Path

RESOURCES = Path(__file__).parent / "resources"
HANDLERS = RESOURCES / "handlers"
FAULT_GATEWAY = RESOURCES / "fault_gateway.py"

_built: dict[str, str] = {}
_build_lock = threading.Lock()


def build_handlers(data_dir: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Build handler files from tests/resources with the real build service (once per
    test session); returns name -> binary path."""
    from edgebook.build.builder import Builder, BuildRequest

    with _build_lock:
        missing = [n for n in names if n not in _built]
        if missing:
            async def build_all():
                builder = Builder(data_dir)
                try:
                    for name in missing:
                        source = (RESOURCES / name).read_text()
                        result = await builder.build(BuildRequest(
                            name=Path(name).stem.replace("_", "-"), source=source))
                        assert result.ok, result.log[-4000:]
                        _built[name] = str(result.binary)
                finally:
                    await builder.aclose()
            asyncio.run(build_all())
        return {n: _built[n] for n in names}


def free_uid(start: int = 61000) -> int | None:
    """An unused uid (no passwd entry, no processes) to sandbox test workers as, so a fork
    bomb's process limit counts only them; None unless running as root."""
    if os.geteuid() != 0:
        return None
    taken = {p.pw_uid for p in pwd.getpwall()}
    for uid in range(start, start + 1000):
        if uid not in taken and not processes_of(uid):
            return uid
    return None


def processes_of(uid: int) -> list[int]:
    """Pids whose real uid is ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


class GatewayProcess:
    """tests/resources/fault_gateway.py in a subprocess; ``get`` talks HTTP to it."""

    def __init__(self, endpoints: list[dict], user: tuple[int, int] | None,
                 env: dict[str, str] | None = None):
        config = {"endpoints": endpoints, "user": list(user) if user else None}
        self.proc = subprocess.Popen(
            [sys.executable, str(FAULT_GATEWAY), json.dumps(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env if env is not None else dict(os.environ))
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"gateway did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, dict, float]:
        """(status, JSON body, seconds) of one GET on a fresh connection."""
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            raw = response.read()
            headers = dict(response.getheaders())
        finally:
            conn.close()
        elapsed = time.monotonic() - started
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"raw": raw[:200].decode("utf-8", "replace")}
        body["_headers"] = headers
        return response.status, body, elapsed

    def wait_ok(self, path: str, deadline: float = 10.0) -> tuple[dict, float]:
        """Poll ``path`` until it answers 200; (body, seconds taken)."""
        started = time.monotonic()
        while True:
            status, body, _ = self.get(path)
            if status == 200:
                return body, time.monotonic() - started
            if time.monotonic() - started > deadline:
                raise AssertionError(f"{path} did not recover within {deadline}s: "
                                     f"{status} {body}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


class SteadyLoad:
    """One client thread sending GETs to ``path`` on a keep-alive connection, paced."""

    def __init__(self, port: int, path: str, pause: float = 0.002):
        self.port, self.path, self.pause = port, path, pause
        self.ok = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "SteadyLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.ok += 1
                else:
                    self.errors.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            time.sleep(self.pause)
        conn.close()
