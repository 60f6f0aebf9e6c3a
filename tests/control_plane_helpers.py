"""Helpers for the control-plane tests: a fake build service and a gateway on loopback.

``FakeBuilder`` turns a "source" into an executable that runs the Python fake worker
(tests/resources/fake_worker.py), so the deploy flow can be tested without cargo. The
source is a tiny directive language: ``tag: NAME`` sets the worker's tag, a line
``compile_error`` makes the build fail with one diagnostic at that line, and
``exit_at_start`` makes the built worker fail before its ready frame.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sys
from typing import Any

from edgebook.admin.routes import make_admin_app
from edgebook.diagnostics import Diagnostic
from edgebook.gateway.core import Gateway, GatewayConfig

RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
from worker_script import FAKE_WORKER


@dataclasses.dataclass
class FakeRequest:
    name: str
    source: str
    deps: tuple = ()
    profile: str = "dev"


@dataclasses.dataclass
class FakeResult:
    ok: bool
    status: str
    binary: str | None
    content_hash: str | None
    cached: bool
    diagnostics: list
    duration: float
    profile: str
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["diagnostics"] = [d.to_dict() for d in self.diagnostics]
        return data


class FakeBuilder:
    """Counts builds; ``gate`` (an asyncio.Event) can hold a build until a test releases it,
    and ``cancel`` ends a held build as cancelled, as the real builder does."""

    def __init__(self, data_dir: str):
        self.bin_dir = os.path.join(data_dir, "bin")
        self.builds: list[FakeRequest] = []
        self.removed: list[str] = []
        self.gate: asyncio.Event | None = None
        self._held: dict[str, asyncio.Event] = {}  # name -> set to cancel its held build

    def cancel(self, name: str) -> bool:
        held = self._held.get(name)
        if held is None:
            return False
        held.set()
        return True

    def remove(self, name: str) -> None:
        self.removed.append(name)

    async def aclose(self) -> None:
        pass

    async def build(self, req: FakeRequest, on_progress=None) -> FakeResult:
        self.builds.append(req)
        if on_progress is not None:
            on_progress({"name": req.name, "profile": req.profile, "phase": "compiling",
                         "elapsed": 0.0})
        if self.gate is not None:
            cancelled = self._held[req.name] = asyncio.Event()
            waits = [asyncio.ensure_future(e.wait()) for e in (self.gate, cancelled)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
                self._held.pop(req.name, None)
            if cancelled.is_set():
                return FakeResult(False, "cancelled", None, None, False, [], 0.01, req.profile)
        lines = req.source.splitlines()
        for number, line in enumerate(lines, 1):
            if line.strip() == "compile_error":
                return FakeResult(False, "failed", None, None, False,
                                  [Diagnostic(level="error", message="expected expression",
                                              line=number, column=1)], 0.01, req.profile,
                                  "error: expected expression")
        tag = next((line.split(":", 1)[1].strip() for line in lines
                    if line.startswith("tag:")), "")
        mode = "exit_at_start" if "exit_at_start" in lines else ""
        digest = hashlib.sha256(f"{req.source}|{req.profile}".encode()).hexdigest()[:16]
        binary = os.path.join(self.bin_dir, digest)
        cached = os.path.exists(binary)
        if not cached:
            os.makedirs(self.bin_dir, exist_ok=True)
            with open(FAKE_WORKER, encoding="utf-8") as handle:
                worker = handle.read()
            with open(binary, "w", encoding="utf-8") as handle:
                handle.write(f"#!{sys.executable}\nimport os\n"
                             f"os.environ['FAKE_WORKER_TAG'] = {tag!r}\n"
                             f"os.environ['FAKE_WORKER_MODE'] = {mode!r}\n" + worker)
            os.chmod(binary, 0o755)
        return FakeResult(True, "ok", binary, digest, cached, [], 0.01, req.profile)


async def start_gateway(data_dir: str, *, token: str = "secret-token", **config: Any):
    """A primary gateway with the fake builder, its admin app listening on loopback.

    Returns (gateway, builder, admin_server, admin_url).
    """
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    builder = FakeBuilder(data_dir)
    cfg = GatewayConfig(data_dir=data_dir, port=0, token=token, **config)
    gateway = Gateway(cfg, builder=builder, build_request=FakeRequest)
    await gateway.start()
    sock, port = bind_unused_port()
    server = HTTPServer(make_admin_app(gateway, token, heartbeat=0.2))
    server.add_sockets([sock])
    return gateway, builder, server, f"http://127.0.0.1:{port}"


async def stop_gateway(gateway: Gateway, server) -> None:
    server.stop()
    await gateway.stop()
    await server.close_all_connections()
