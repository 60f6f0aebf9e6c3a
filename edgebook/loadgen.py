"""A bounded HTTP/1.1 load generator for loopback targets (the notebook's
``edgebook.bench`` and the benchmark harness both send their load through it).

Raw asyncio sockets, keep-alive connections with one request in flight each, responses
framed by Content-Length, chunked encoding or end of connection. Loads go to loopback
addresses only (``check_loopback``) and are bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket
import time
from array import array
from collections.abc import Sequence

#: Status recorded for a request that got no HTTP response (refused, reset, timed out).
NO_RESPONSE = 0
#: How many responses' ``Server-Timing`` headers a load keeps (when it keeps them).
MAX_TIMINGS = 200_000


class LoadError(Exception):
    """A load that must not or cannot be sent."""


def check_loopback(host: str) -> None:
    """Raise ``LoadError`` unless every address of ``host`` is a loopback address."""
    try:
        addresses = {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except socket.gaierror as exc:
            raise LoadError(f"cannot resolve {host!r}: {exc}") from None
        addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    if not addresses or not all(a.is_loopback for a in addresses):
        raise LoadError(f"load goes to loopback addresses only, and {host!r} is not one")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of already sorted values; NaN when empty."""
    if not len(sorted_values):
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, bodiless: bool = False):
        self.loop = loop
        # Answers to HEAD have no body, whatever Content-Length or chunking they announce.
        self.bodiless = bodiless
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.eof = False
        self.closed = False
        self.server_timing: bytes | None = None  # of the last response

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        self._complete()

    def eof_received(self):
        self.eof = True
        self._complete()
        return False

    def connection_lost(self, exc):
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("connection closed"))

    def send(self, payload: bytes) -> asyncio.Future:
        self.waiter = self.loop.create_future()
        self.transport.write(payload)
        return self.waiter

    def abort(self, exc: BaseException | None = None):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionAbortedError("aborted"))
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    def _complete(self):
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if self.eof:
                waiter.set_exception(ConnectionResetError("connection closed mid-response"))
            return
        head = bytes(self.buf[:end]).lower()
        try:
            status = int(head[9:12])
        except ValueError:
            waiter.set_exception(ConnectionError(f"malformed status line {head[:40]!r}"))
            return
        length = None
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            eol = head.find(b"\r\n", at + 2)
            length = int(head[at + 17: eol if eol >= 0 else len(head)])
        chunked = head.find(b"\r\ntransfer-encoding: chunked") >= 0
        if head.startswith(b"http/1.0"):
            keep_alive = head.find(b"\r\nconnection: keep-alive") >= 0
        else:
            keep_alive = head.find(b"\r\nconnection: close") < 0
        start = end + 4
        if self.bodiless or status in (204, 304) or status < 200:
            total = start
        elif chunked:
            total = _chunked_end(self.buf, start)
            if total is None:
                return
        elif length is not None:
            total = start + length
            if len(self.buf) < total:
                return
        else:  # body runs to the end of the connection
            if not self.eof:
                return
            total = len(self.buf)
            keep_alive = False
        del self.buf[:total]
        at = head.find(b"\r\nserver-timing:")
        if at >= 0:
            eol = head.find(b"\r\n", at + 2)
            self.server_timing = head[at + 16: eol if eol >= 0 else len(head)].strip()
        else:
            self.server_timing = None
        waiter.set_result((status, keep_alive))


def _chunked_end(buf: bytearray, pos: int) -> int | None:
    """Where a chunked body starting at ``pos`` ends, or None while incomplete."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0].strip() or b"0", 16)
        pos = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", pos - 2)
            return None if trailer_end < 0 else trailer_end + 4
        pos += size + 2
        if pos > len(buf):
            return None


class Load:
    """One bounded load: ``payload`` (a whole HTTP/1.1 request) sent ``n`` times at most,
    for ``duration`` seconds at most, over ``concurrency`` keep-alive connections with one
    request in flight each; run it with ``await load.run()`` on any loop.

    Every request is recorded: its start (seconds after ``t0``, a ``time.perf_counter()``
    value, default the start of the run), its latency and its status (``NO_RESPONSE`` when
    none came). ``stopping`` (settable from another thread) lets in-flight requests finish
    and sends no more; ``abort()`` (on the load's loop) fails them at once. With
    ``keep_timings``, ``timings`` holds ``(request index, Server-Timing value or None)``.
    """

    def __init__(self, host: str, port: int, payload: bytes, n: int, concurrency: int,
                 duration: float | None, timeout: float, *, t0: float | None = None,
                 start_at: float | None = None, keep_timings: bool = False):
        self.host, self.port, self.payload = host, port, payload
        self.n, self.concurrency, self.duration, self.timeout = n, concurrency, duration, timeout
        self._t0, self._start_at = t0, start_at
        self.starts = array("d")
        self.latencies = array("d")
        self.statuses = array("i")
        self.timings: list[tuple[int, bytes | None]] | None = [] if keep_timings else None
        self.issued = 0
        self.stopping = False          # set from the caller's thread: finish in-flight, stop
        self.connect_errors: list[str] = []
        self.refused = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[Connection] = set()
        self.t0 = 0.0
        self.wall = 0.0
        self.cpu = 0.0

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self._start_at is not None:  # several loads (processes) starting together
            await asyncio.sleep(max(0.0, self._start_at - time.perf_counter()))
        cpu0 = time.thread_time()
        started = time.perf_counter()
        self.t0 = self._t0 if self._t0 is not None else started
        self.deadline = started + self.duration if self.duration else float("inf")
        await asyncio.gather(*(self._client() for _ in range(self.concurrency)))
        self.wall = time.perf_counter() - started
        self.cpu = time.thread_time() - cpu0

    def abort(self) -> None:
        """Fail every in-flight request now (called on the runner's loop)."""
        self.stopping = True
        for conn in list(self.connections):
            conn.abort()

    def _take(self) -> bool:
        if self.stopping or self.issued >= self.n or time.perf_counter() >= self.deadline:
            return False
        self.issued += 1
        return True

    async def _connect(self) -> Connection:
        bodiless = self.payload.startswith(b"HEAD ")
        _, conn = await self.loop.create_connection(
            lambda: Connection(self.loop, bodiless=bodiless), self.host, self.port)
        conn.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                           socket.TCP_NODELAY, 1)
        self.connections.add(conn)
        return conn

    async def _client(self) -> None:
        conn: Connection | None = None
        loop = self.loop
        while self._take():
            started = time.perf_counter()
            status = NO_RESPONSE
            try:
                if conn is None or conn.closed:
                    conn = await self._connect()
                waiter = conn.send(self.payload)
                timer = loop.call_at(loop.time() + self.timeout, conn.abort,
                                     TimeoutError("request timed out"))
                try:
                    status, keep_alive = await waiter
                finally:
                    timer.cancel()
                if self.timings is not None and len(self.timings) < MAX_TIMINGS:
                    self.timings.append((len(self.statuses), conn.server_timing))
                if not keep_alive:
                    conn.abort()
            except OSError as exc:
                if isinstance(exc, ConnectionRefusedError):
                    self.refused += 1
                if len(self.connect_errors) < 20:
                    self.connect_errors.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.abort()
                    self.connections.discard(conn)
                    conn = None
            self.starts.append(started - self.t0)
            self.latencies.append(time.perf_counter() - started)
            self.statuses.append(status)
        if conn is not None:
            conn.abort()
            self.connections.discard(conn)
