"""One worker process: spawn it, talk frames to it, drain its stderr, stop and reap it.

``WorkerProcess`` is the only object that touches its OS process. Its invariant: every
request handed to ``submit`` (or ``send``) gets exactly one outcome: the worker's response,
a 504 when it exceeds its timeout, a 502 when the worker dies or breaks the protocol first,
or ``WorkerGoneError`` when the worker provably never started it (so it may go to another
worker).

A worker handles its requests one at a time, in the order they were written, so only the
oldest unanswered request (the *head*) can be running. A request's timeout clock therefore
starts when it becomes the head, not when it is written: a slow request does not eat the
time of the requests queued behind it. When the head times out the worker is killed, its
stdout is read to the end, and the requests behind it that no response proves started get
``WorkerGoneError`` instead of a 502.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import functools
import logging
import os
import signal
import time
from typing import Awaitable, Callable

from ..errors import GatewayError
from .logring import LogRing
from ..protocol import (BINARY_BODY_ENV, DEFAULT_MAX_FRAME, PROTOCOL_VERSION,
                        WORKER_FRAME_TYPES, FrameReader, FrameWriter, OversizedFrameError,
                        ProtocolError)

log = logging.getLogger(__name__)

#: ``async (call_frame) -> {"ok": True, "result": ...} | {"ok": False, "error": {...}}``
ServiceHandler = Callable[[dict], Awaitable[dict]]
#: ``(response_frame, None)`` or ``(None, exception)``: how a submitted request ends.
Outcome = Callable[[dict | None, Exception | None], None]

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


def settle(future: asyncio.Future, response: dict | None, error: Exception | None) -> None:
    """An ``Outcome`` for a future (``functools.partial(settle, future)``)."""
    if future.done():
        return
    if error is None:
        future.set_result(response)
    else:
        future.set_exception(error)


#: Pipe capacity asked for on a worker's stdin and stdout (Linux caps unprivileged requests
#: at /proc/sys/fs/pipe-max-size, 1 MiB by default): a 64-100 KiB body then crosses in one
#: write and one read instead of several wake-ups of each side.
PIPE_SIZE = 1024 * 1024
STREAM_LIMIT = 1 << 20


class _Pipes:
    """A worker's three stdio pipes, made here rather than by the event loop: real pipes
    under every loop (uvloop's own would be socket pairs) and widened to ``PIPE_SIZE``."""

    def __init__(self):
        self.child_stdin, self._stdin = os.pipe()
        self._stdout, self.child_stdout = os.pipe()
        self._stderr, self.child_stderr = os.pipe()
        set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
        for fd in (self._stdin, self._stdout) if set_size is not None else ():
            try:
                fcntl.fcntl(fd, set_size, PIPE_SIZE)
            except OSError:
                pass  # best effort: the pipe keeps its default size

    async def connect(self) -> tuple[asyncio.StreamWriter, asyncio.StreamReader,
                                     asyncio.StreamReader]:
        """Close the child's ends (it has them now) and wrap the gateway's in streams."""
        self._close_child_ends()
        loop = asyncio.get_running_loop()
        readers = []
        for fd in (self._stdout, self._stderr):
            reader = asyncio.StreamReader(limit=STREAM_LIMIT)
            await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r),
                                         os.fdopen(fd, "rb", buffering=0))
            readers.append(reader)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
            os.fdopen(self._stdin, "wb", buffering=0))
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return writer, readers[0], readers[1]

    def _close_child_ends(self) -> None:
        for fd in (self.child_stdin, self.child_stdout, self.child_stderr):
            os.close(fd)

    def close(self) -> None:
        self._close_child_ends()
        for fd in (self._stdin, self._stdout, self._stderr):
            os.close(fd)


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
        # Offer binary body frames; the worker takes them up in its ready frame, or not.
        self.env = {**env, BINARY_BODY_ENV: "1"}
        self.label = label
        self.cwd = cwd
        self._log_ring = log_ring
        self._service_handler = service_handler
        self._max_frame = max_frame
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._stdout: asyncio.StreamReader | None = None
        self._stderr: asyncio.StreamReader | None = None
        self._writer: FrameWriter | None = None
        # request id -> [outcome callback, timer (the head's only), timeout]; written order
        self._pending: dict[str, list] = {}
        self._expired: str | None = None  # the head that timed out; its answer is ignored
        self._answered_after_expiry = False  # then the next request may have started
        self._timed_out = False
        self._stdout_done: asyncio.Future | None = None
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
        self._stdout_done = loop.create_future()
        pipes = _Pipes()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=pipes.child_stdin, stdout=pipes.child_stdout,
                stderr=pipes.child_stderr, env=self.env, cwd=self.cwd, close_fds=True,
                start_new_session=True)
        except OSError as exc:
            pipes.close()
            self.state = "exited"
            self.exit_reason = f"cannot start {self.argv[0]!r}: {exc.strerror or exc}"
            self._exited.set_result(None)
            self._stderr_done.set_result(None)
            self._stdout_done.set_result(None)
            raise WorkerStartError(self.exit_reason, []) from None
        self.pid = self._proc.pid
        self.label = f"{self.label}/pid {self.pid}"
        self._stdin, self._stdout, self._stderr = await pipes.connect()
        self._writer = FrameWriter(self._stdin, max_frame=self._max_frame)
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

    def submit(self, frame: dict, timeout: float | None, outcome: Outcome) -> None:
        """Write a request frame; ``outcome(response, None)`` or ``outcome(None, error)``
        is called once, later (never from inside this call).

        Raises WorkerGoneError (nothing written) when the worker is not ready, and
        GatewayError 413 when the encoded frame is over the maximum frame size (nothing
        written: a frame the worker would refuse must not cost it its life). The error
        passed to ``outcome`` is GatewayError 504 after ``timeout`` seconds as the head
        (and the worker is killed), 502 when the worker dies or breaks the protocol
        first, or WorkerGoneError when the worker was killed before it started this one.
        """
        if self.state != "ready":
            raise WorkerGoneError(f"{self.label} is {self.state}")
        request_id = frame["request_id"]
        pending = self._pending
        if request_id in pending:
            raise GatewayError(409, "duplicate_request_id",
                               f"request id {request_id!r} is already in flight")
        try:
            self._writer.write(frame)
        except OversizedFrameError as exc:
            raise GatewayError(
                413, "body_too_large", "the request is too large to pass to the endpoint's "
                f"worker (frames are limited to {self._max_frame} bytes)",
                log_message=f"{self.label}: {exc}") from None
        entry = [outcome, None, timeout]
        pending[request_id] = entry
        if timeout and len(pending) == 1:  # the head: the worker starts it now
            entry[1] = asyncio.get_running_loop().call_later(
                timeout, self._expire, request_id, timeout)

    def send(self, frame: dict, timeout: float | None) -> asyncio.Future:
        """``submit`` with a future: it resolves to the response frame or fails with the
        error ``submit`` describes."""
        future = asyncio.get_running_loop().create_future()
        self.submit(frame, timeout, functools.partial(settle, future))
        return future

    def _expire(self, request_id: str, timeout: float) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        self._expired = request_id
        self._timed_out = True
        self.exit_expected = True
        self.kill(f"request {request_id} exceeded the {timeout:g}s timeout")
        entry[0](None, GatewayError(
            504, "timeout", f"the handler did not answer within {timeout:g}s",
            log_message=f"{self.label}: request {request_id} timed out after {timeout:g}s;"
                        " killing the worker"))

    def _resolve(self, frame: dict) -> None:
        request_id = frame.get("request_id")
        pending = self._pending
        entry = pending.pop(request_id, None) if isinstance(request_id, str) else None
        if entry is None:
            if request_id is not None and request_id == self._expired:
                self._expired = None  # answered after its 504: the worker moved on
                self._answered_after_expiry = True
                return
            raise ProtocolError(f"response for request id {request_id!r}, which is not in "
                                "flight (unknown or answered already)")
        if entry[1] is not None:
            entry[1].cancel()
        if self._expired is not None or self.state == "dying":
            self._answered_after_expiry = True
        self.served += 1
        if pending and self.state == "ready":
            head = next(iter(pending.values()))  # the worker starts it now
            if head[1] is None and head[2]:
                head[1] = asyncio.get_running_loop().call_later(
                    head[2], self._expire, next(iter(pending)), head[2])
        entry[0](frame, None)

    def _fail_pending(self) -> None:
        failure = self._failure or GatewayError(
            502, "worker_crashed", "the endpoint's worker exited before answering")
        pending, self._pending = self._pending, {}
        # After a timeout kill, requests behind the head never started, unless a response
        # came after the expiry: then the first of them may have been running.
        timed_out = self._timed_out
        started = not timed_out or self._answered_after_expiry
        for outcome, timer, _ in pending.values():
            if timer is not None:
                timer.cancel()
            if started:
                started = not timed_out
                outcome(None, failure)
            else:
                outcome(None, WorkerGoneError(
                    f"{self.label} was killed before it started this request"))

    # -- the three pipes -------------------------------------------------------------

    async def _read_stdout(self) -> None:
        reader = FrameReader(self._stdout, max_frame=self._max_frame,
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
            self._writer.binary = first.get("binary_body") is True
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
        finally:
            self._stdout_done.set_result(None)

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
            try:
                self._writer.write(reply)
            except OversizedFrameError as exc:  # the handler hears why; the worker lives
                reply.pop("result", None)
                reply.update(ok=False, error={
                    "kind": "internal",
                    "message": f"the service reply is too large for the worker protocol: "
                               f"{exc}"})
                self._writer.write(reply)

    async def _drain_stderr(self) -> None:
        """Read stderr until EOF, whatever the worker writes, so its pipe never fills."""
        stream = self._stderr
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
        try:  # let the last responses and stderr lines (often the reason) arrive
            await asyncio.wait_for(
                asyncio.gather(asyncio.shield(self._stdout_done),
                               asyncio.shield(self._stderr_done)), 1.0)
        except asyncio.TimeoutError:
            pass  # a grandchild holds a pipe open; the process itself is gone
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
