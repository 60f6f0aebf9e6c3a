"""One worker process: spawn it, talk frames to it, drain its stderr, stop and reap it.

``WorkerProcess`` is the only object that touches its OS process. Its invariant: every
request handed to ``send`` gets exactly one outcome: the worker's response, a 504 when it
exceeds its timeout, or a 502 when the worker dies or breaks the protocol first. Requests
that reached the worker's pipe are never retried elsewhere, because the worker may have
read (and acted on) them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
from typing import Awaitable, Callable

from .errors import GatewayError
from .logring import LogRing
from .protocol import (DEFAULT_MAX_FRAME, PROTOCOL_VERSION, WORKER_FRAME_TYPES, FrameReader,
                       FrameWriter, ProtocolError)

log = logging.getLogger("edgebook.worker")

#: ``async (call_frame) -> {"ok": True, "result": ...} | {"ok": False, "error": {...}}``
ServiceHandler = Callable[[dict], Awaitable[dict]]

STDERR_CHUNK = 65536
EXIT_WAIT = 2.0  # after stdout ends, how long to wait for the exit status before killing


class WorkerStartError(Exception):
    """The worker did not become ready: it exited, timed out, or spoke out of turn."""

    def __init__(self, reason: str, stderr_tail: list[str]):
        super().__init__(reason)
        self.reason = reason
        self.stderr_tail = stderr_tail


class WorkerGoneError(Exception):
    """The worker can take no more requests; the request was not written, so it may go
    to another worker."""


async def not_bound(call: dict) -> dict:
    """The default service handler: the endpoint is bound to no services."""
    return {"ok": False, "error": {
        "kind": "not_bound",
        "message": f"this endpoint is not bound to a service named {call.get('service')!r}"}}


class WorkerProcess:
    """The one owner of one worker OS process.

    Life: ``await start(timeout)`` until the ``ready`` frame, then ``send(frame, timeout)``
    any number of times (several requests may be in the pipe at once), then
    ``await stop(grace)``. ``kill(reason)`` ends it at once. ``on_exit(worker)`` is called
    once, after the process is reaped and every pending request has its outcome.
    """

    def __init__(self, argv: list[str], *, env: dict[str, str], log_ring: LogRing,
                 label: str = "worker", service_handler: ServiceHandler = not_bound,
                 max_frame: int = DEFAULT_MAX_FRAME,
                 on_exit: Callable[["WorkerProcess"], None] | None = None,
                 cwd: str | None = None):
        self.argv = list(argv)
        self.env = dict(env)
        self.label = label
        self.cwd = cwd
        self._log_ring = log_ring
        self._service_handler = service_handler
        self._max_frame = max_frame
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: FrameWriter | None = None
        self._pending: dict[str, tuple[asyncio.Future, asyncio.TimerHandle | None]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ready: asyncio.Future | None = None
        self._exited: asyncio.Future | None = None
        self._stderr_done: asyncio.Future | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        #: new -> starting -> ready -> (stopping | dying) -> exited
        self.state = "new"
        self.pid: int | None = None
        self.returncode: int | None = None
        self.exit_reason: str | None = None
        #: True when the gateway asked the worker to go (stop, or kill after a timeout).
        self.exit_expected = False
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.served = 0
        self.ready_frame: dict | None = None
        # What pending requests are told when the worker dies; set by whoever kills it.
        self._failure: GatewayError | None = None

    # -- life cycle ------------------------------------------------------------------

    async def start(self, timeout: float) -> None:
        """Spawn the process and wait for its ``ready`` frame; raise WorkerStartError."""
        assert self.state == "new", "a WorkerProcess starts once"
        self.state = "starting"
        loop = asyncio.get_running_loop()
        self.started_at = time.monotonic()
        self._ready = loop.create_future()
        self._exited = loop.create_future()
        self._stderr_done = loop.create_future()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.env, cwd=self.cwd, close_fds=True,
                start_new_session=True, limit=1 << 20)
        except OSError as exc:
            self.state = "exited"
            self.exit_reason = f"cannot start {self.argv[0]!r}: {exc.strerror or exc}"
            self._exited.set_result(None)
            self._stderr_done.set_result(None)
            raise WorkerStartError(self.exit_reason, []) from None
        self.pid = self._proc.pid
        self.label = f"{self.label}/pid {self.pid}"
        self._writer = FrameWriter(self._proc.stdin)
        self._spawn(self._read_stdout())
        self._spawn(self._drain_stderr())
        self._spawn(self._reap())
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            self.kill(f"no ready frame within {timeout:g}s")
            await self._await_exit()
            raise WorkerStartError(self.exit_reason or "start timed out",
                                   list(self.stderr_tail)) from None
        except WorkerStartError:
            await self._await_exit()
            raise WorkerStartError(self.exit_reason or "worker failed to start",
                                   list(self.stderr_tail)) from None

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_exit(self) -> None:
        await asyncio.shield(self._exited)

    async def wait_exited(self) -> None:
        """Return once the process is reaped and every pending request has its outcome."""
        if self._exited is not None:
            await asyncio.shield(self._exited)

    async def stop(self, grace: float = 5.0) -> None:
        """Close stdin so the worker finishes what it read and exits; escalate if it won't."""
        if self._proc is None or self._exited is None or self._exited.done():
            return
        self.exit_expected = True
        if self.state == "ready":
            self.state = "stopping"
        if self._failure is None:
            self._failure = GatewayError(
                502, "worker_killed", "the endpoint's worker was stopped before answering",
                log_message=f"{self.label}: stopped with requests still pending")
        if self._writer is not None:
            self._writer.close()
        for sig, wait in ((None, grace), (signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                self._signal(sig)
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), wait)
                return
            except asyncio.TimeoutError:
                continue
        log.error("%s: did not exit after SIGKILL", self.label)

    def kill(self, reason: str, failure: GatewayError | None = None) -> None:
        """Kill the process group now; pending requests fail with ``failure`` (or a 502)."""
        if self.exit_reason is None:
            self.exit_reason = reason
        if self.state != "exited":
            self.state = "dying"  # takes no more requests from this moment
        if self._failure is None:
            self._failure = failure or GatewayError(
                502, "worker_killed", "the endpoint's worker was restarted before answering",
                log_message=f"{self.label}: killed: {reason}")
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, sig)  # the worker leads its own session and group
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    # -- requests --------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return len(self._pending)

    @property
    def alive(self) -> bool:
        return self.state == "ready"

    def send(self, frame: dict, timeout: float | None) -> asyncio.Future:
        """Write a request frame; the future resolves to the response frame.

        Raises WorkerGoneError (nothing written) when the worker is not ready. The future
        fails with GatewayError 504 after ``timeout`` seconds (and the worker is killed)
        or 502 when the worker dies or breaks the protocol first.
        """
        if self.state != "ready":
            raise WorkerGoneError(f"{self.label} is {self.state}")
        request_id = frame["request_id"]
        if request_id in self._pending:
            raise GatewayError(409, "duplicate_request_id",
                               f"request id {request_id!r} is already in flight")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        timer = loop.call_later(timeout, self._expire, request_id, timeout) if timeout else None
        self._pending[request_id] = (future, timer)
        self._writer.write(frame)
        return future

    def _expire(self, request_id: str, timeout: float) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        future, _ = entry
        if not future.done():
            future.set_exception(GatewayError(
                504, "timeout", f"the handler did not answer within {timeout:g}s",
                log_message=f"{self.label}: request {request_id} timed out after {timeout:g}s;"
                            " killing the worker"))
        self.exit_expected = True
        self.kill(f"request {request_id} exceeded the {timeout:g}s timeout")

    def _resolve(self, frame: dict) -> None:
        request_id = frame.get("request_id")
        entry = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if entry is None:
            raise ProtocolError(f"response for request id {request_id!r}, which is not in "
                                "flight (unknown or answered already)")
        future, timer = entry
        if timer is not None:
            timer.cancel()
        self.served += 1
        if not future.done():
            future.set_result(frame)

    def _fail_pending(self) -> None:
        failure = self._failure or GatewayError(
            502, "worker_crashed", "the endpoint's worker exited before answering")
        pending, self._pending = self._pending, {}
        for future, timer in pending.values():
            if timer is not None:
                timer.cancel()
            if not future.done():
                future.set_exception(failure)

    # -- the three pipes -------------------------------------------------------------

    async def _read_stdout(self) -> None:
        reader = FrameReader(self._proc.stdout, max_frame=self._max_frame,
                             known_types=WORKER_FRAME_TYPES)
        try:
            first = await reader.read()
            if first is None:  # the exit status says why
                asyncio.get_running_loop().call_later(EXIT_WAIT, self._kill_if_running)
                return
            problem = self._check_ready(first)
            if problem:
                self._protocol_failure(problem, start=True)
                return
            self.ready_frame = first
            self.ready_at = time.monotonic()
            if self.state == "starting":
                self.state = "ready"
            self._ready.set_result(None)
            while True:
                frame = await reader.read()
                if frame is None:
                    # The exit status decides what pending requests hear; a worker that
                    # closed stdout yet keeps running can answer nothing, so it goes.
                    asyncio.get_running_loop().call_later(EXIT_WAIT, self._kill_if_running)
                    return
                kind = frame.get("type")
                if kind == "response":
                    self._resolve(frame)
                elif kind == "service_call":
                    self._spawn(self._serve_call(frame))
                else:
                    raise ProtocolError(f"unexpected {kind!r} frame after ready")
        except ProtocolError as exc:
            self._protocol_failure(f"broke the protocol ({exc.kind}): {exc}",
                                   start=not self._ready.done())
        except Exception:  # a bug here must not leave requests hanging
            log.exception("%s: error reading stdout", self.label)
            self._protocol_failure("gateway error reading the worker's output",
                                   start=not self._ready.done())

    def _kill_if_running(self) -> None:
        if not self._exited.done():
            self.kill("closed its stdout but kept running")

    def _check_ready(self, frame: dict) -> str | None:
        if frame.get("type") != "ready":
            return f"sent a {frame.get('type', 'request')!r} frame before its ready frame"
        if frame.get("protocol") != PROTOCOL_VERSION:
            return (f"speaks protocol {frame.get('protocol')!r}; this gateway speaks "
                    f"{PROTOCOL_VERSION}")
        return None

    def _protocol_failure(self, problem: str, *, start: bool) -> None:
        reason = f"worker {problem}"
        self._log_ring.append("gateway", f"{self.label}: {reason}")
        if not start:
            log.warning("%s: %s", self.label, reason)
        self.kill(reason, GatewayError(
            502, "bad_worker_response", "the endpoint's worker sent an invalid response",
            log_message=f"{self.label}: {reason}"))
        if not self._ready.done():
            self._ready.set_exception(WorkerStartError(reason, []))
            self._ready.exception()  # retrieved: start() re-raises with the stderr tail

    async def _serve_call(self, call: dict) -> None:
        reply = {"type": "service_reply", "request_id": call.get("request_id"),
                 "call_id": call.get("call_id")}
        try:
            outcome = await self._service_handler(call)
        except Exception as exc:
            log.exception("%s: service handler failed for %s", self.label, call.get("op"))
            outcome = {"ok": False, "error": {"kind": "internal",
                                              "message": f"service call failed: {exc}"}}
        reply.update(outcome)
        if self.state in ("ready", "stopping") and self._writer is not None:
            self._writer.write(reply)

    async def _drain_stderr(self) -> None:
        """Read stderr until EOF, whatever the worker writes, so its pipe never fills."""
        stream = self._proc.stderr
        max_line = self._log_ring.max_line
        partial = b""
        skipping = False  # inside an over-long line whose start was already logged
        try:
            while True:
                chunk = await stream.read(STDERR_CHUNK)
                if not chunk:
                    break
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for raw in lines:
                    if skipping:
                        skipping = False
                        continue
                    self._stderr_line(raw)
                if len(partial) > max_line:
                    if not skipping:
                        self._stderr_line(partial)
                    skipping = True
                    partial = b""
            if partial and not skipping:
                self._stderr_line(partial)
        except Exception:
            log.exception("%s: error draining stderr", self.label)
        finally:
            self._stderr_done.set_result(None)

    def _stderr_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self._log_ring.append(self.label, text)
        self.stderr_tail.append(text[: self._log_ring.max_line])

    async def _reap(self) -> None:
        returncode = await self._proc.wait()
        self.returncode = returncode
        try:  # let the last stderr lines (often the reason) arrive
            await asyncio.wait_for(asyncio.shield(self._stderr_done), 1.0)
        except asyncio.TimeoutError:
            pass  # a grandchild holds stderr open; the process itself is gone
        status = (f"signal {-returncode}" if returncode < 0 else f"status {returncode}")
        if self.exit_reason is None:
            self.exit_reason = f"exited with {status}"
            if self.ready_at is None:
                self.exit_reason += " before sending its ready frame"
        if self._failure is None:
            tail = " | ".join(list(self.stderr_tail)[-3:])
            self._failure = GatewayError(
                502, "worker_crashed", "the endpoint's worker exited before answering",
                log_message=f"{self.label}: exited with {status}; stderr: {tail}")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(WorkerStartError(self.exit_reason, []))
            self._ready.exception()
        self.state = "exited"
        self._log_ring.append("gateway", f"{self.label}: {self.exit_reason}")
        self._fail_pending()
        if self._writer is not None:
            self._writer.close()
        self._exited.set_result(None)
        if self._on_exit is not None:
            try:
                self._on_exit(self)
            except Exception:
                log.exception("%s: on_exit callback failed", self.label)
