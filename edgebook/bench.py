"""Bounded load tests against endpoints, run off the kernel's event loop.

:func:`bench` sends requests over keep-alive HTTP/1.1 connections from a private thread
with its own asyncio loop (the caller's loop, if any, is never touched), and returns a
:class:`BenchReport`: throughput, error counts by status, latency percentiles as a pandas
DataFrame, the raw samples, and plots. Loads are bounded (requests, duration, concurrency)
and go to loopback addresses only unless ``allow_remote=True``. Ctrl-C (a kernel interrupt)
stops the run and returns what was measured so far.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import ipaddress
import socket
import sys
import threading
import time
from array import array
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from .http import Params, _NO_JSON, build_request, is_absolute, resolve_url

MAX_REQUESTS = 1_000_000
MAX_DURATION = 600.0
MAX_CONCURRENCY = 512
DEFAULT_REQUESTS = 1000

#: Status recorded for a request that got no HTTP response (refused, reset, timed out).
NO_RESPONSE = 0
PERCENTILES = (50, 90, 99)


class BenchError(Exception):
    """A load test that cannot start (bad target, nothing listening)."""


# -- the load generator ----------------------------------------------------------------------

class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.eof = False
        self.closed = False

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
        if chunked:
            total = _chunked_end(self.buf, start)
            if total is None:
                return
        elif length is not None:
            total = start + length
            if len(self.buf) < total:
                return
        elif status in (204, 304) or status < 200:
            total = start
        else:  # body runs to the end of the connection
            if not self.eof:
                return
            total = len(self.buf)
            keep_alive = False
        del self.buf[:total]
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


class _Runner:
    """Runs one load test on the loop of the thread that calls :meth:`run`."""

    def __init__(self, host: str, port: int, payload: bytes, n: int, concurrency: int,
                 duration: float | None, timeout: float):
        self.host, self.port, self.payload = host, port, payload
        self.n, self.concurrency, self.duration, self.timeout = n, concurrency, duration, timeout
        self.starts = array("d")
        self.latencies = array("d")
        self.statuses = array("i")
        self.issued = 0
        self.stopping = False          # set from the caller's thread: finish in-flight, stop
        self.connect_errors: list[str] = []
        self.refused = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[_Connection] = set()
        self.t0 = 0.0
        self.wall = 0.0
        self.cpu = 0.0

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        cpu0 = time.thread_time()
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + self.duration if self.duration else float("inf")
        await asyncio.gather(*(self._client() for _ in range(self.concurrency)))
        self.wall = time.perf_counter() - self.t0
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

    async def _connect(self) -> _Connection:
        _, conn = await self.loop.create_connection(lambda: _Connection(self.loop),
                                                    self.host, self.port)
        conn.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                           socket.TCP_NODELAY, 1)
        self.connections.add(conn)
        return conn

    async def _client(self) -> None:
        conn: _Connection | None = None
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


# -- public API ------------------------------------------------------------------------------

def check_loopback(host: str) -> None:
    """Raise ``BenchError`` unless every address of ``host`` is a loopback address."""
    try:
        addresses = {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except socket.gaierror as exc:
            raise BenchError(f"cannot resolve {host!r}: {exc}") from None
        addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    if not addresses or not all(a.is_loopback for a in addresses):
        raise BenchError(f"bench sends load to loopback addresses only, and {host!r} is not "
                         "one; pass allow_remote=True to load a host you are responsible for")


def bench(method: str, path: str, *, n: int | None = None, concurrency: int = 8,
          duration: float | None = None, json: Any = _NO_JSON, data: Any = None,
          headers: Mapping[str, str] | None = None, params: Params = None,
          timeout: float = 10.0, label: str | None = None, allow_remote: bool = False,
          progress: bool | None = None, base_url: str | None = None,
          session=None) -> "BenchReport":
    """Send ``n`` requests (default 1000) over ``concurrency`` keep-alive connections.

    ``duration`` (seconds) stops the run early; with ``duration`` and no ``n``, the run
    lasts ``duration``. Both are capped (``MAX_REQUESTS``, ``MAX_DURATION``). The run
    happens on a private thread; a KeyboardInterrupt stops it and the partial report is
    returned (``report.interrupted`` is True). ``progress`` shows a live progress bar for
    runs longer than half a second (default: when a widget frontend is present).
    """
    if n is None:
        n = MAX_REQUESTS if duration is not None else DEFAULT_REQUESTS
    if not 1 <= n <= MAX_REQUESTS:
        raise ValueError(f"n must be between 1 and {MAX_REQUESTS:,}, not {n}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}")
    if duration is not None and not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be between 0 and {MAX_DURATION:g} seconds, not {duration}")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if session is None and base_url is None and not is_absolute(path):
        from . import session as session_mod
        session = session_mod.current()
    if base_url is None and session is not None:
        base_url = session.data_url
    url = resolve_url(path, base_url, params)
    sent = build_request(method, url, json=json, data=data, headers=headers)
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise BenchError(f"bench speaks plain http to loopback endpoints, not {parts.scheme!r}")
    host, port = parts.hostname, parts.port or 80
    if not allow_remote:
        check_loopback(host)
    runner = _Runner(host, port, _encode(sent, parts), n, concurrency, duration, timeout)
    ticker = _progress_ticker(runner) if progress is not False else None
    try:
        interrupted = _run_in_thread(runner, ticker)
    finally:
        if ticker is not None:
            ticker.close()
    report = BenchReport.from_runner(runner, method=sent.method, url=url, label=label,
                                     interrupted=interrupted)
    if report.requests and runner.refused == report.requests:
        raise BenchError(f"nothing is listening at {parts.scheme}://{parts.netloc} (every "
                         "connection was refused); is the gateway running?")
    return report


def _encode(sent, parts) -> bytes:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{sent.method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    names = set()
    for name, value in sent.headers:
        names.add(name.lower())
        lines.append(f"{name}: {value}")
    body = sent.body or b""
    if body or sent.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    if "user-agent" not in names:
        lines.append("User-Agent: edgebook-bench")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _progress_ticker(runner: _Runner):
    from .progress import BenchProgress, widgets_wanted
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    if not widgets_wanted(get_ipython()):
        return None
    return BenchProgress(runner.n if runner.n < MAX_REQUESTS else None, runner.duration)


def _run_in_thread(runner: _Runner, ticker=None) -> bool:
    """Run ``runner`` on a private thread and loop; True when it was interrupted.

    ``ticker.update(done, elapsed)`` is called on this thread every few tenths of a second.
    """
    failure: list[BaseException] = []

    def main():
        try:
            asyncio.run(runner.run())
        except BaseException as exc:  # reported on the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=main, name="edgebook-bench", daemon=True)
    thread.start()
    interrupted = False
    try:
        while thread.is_alive():
            thread.join(0.25)
            if ticker is not None and runner.t0:
                ticker.update(len(runner.statuses), time.perf_counter() - runner.t0)
    except KeyboardInterrupt:
        interrupted = True
        runner.stopping = True     # no new requests; in-flight ones finish or time out
        try:
            while thread.is_alive():
                thread.join(0.1)
        except KeyboardInterrupt:  # a second interrupt: abort the in-flight requests too
            if runner.loop is not None and runner.loop.is_running():
                runner.loop.call_soon_threadsafe(runner.abort)
            thread.join(runner.timeout + 1.0)
        print(f"edgebook.bench: interrupted after {len(runner.statuses)} requests; "
              "returning partial results", file=sys.stderr)
    if failure:
        raise failure[0]
    if interrupted and not runner.wall:
        runner.wall = time.perf_counter() - runner.t0
    return interrupted


class BenchReport:
    """The result of one :func:`bench` run.

    ``samples`` has one row per request: ``start_s`` (offset from the run's start),
    ``latency_ms`` and ``status`` (0 = no response). ``df`` is a one-row summary
    (requests, throughput, errors, latency percentiles in ms) indexed by the label.
    """

    def __init__(self, *, method: str, url: str, label: str | None, samples, wall: float,
                 concurrency: int, client_cpu: float, interrupted: bool = False,
                 connect_errors: Sequence[str] = ()):
        self.method = method
        self.url = url
        self.label = label or f"{method} {urlsplit(url).path}"
        self.samples = samples
        self.wall = wall
        self.concurrency = concurrency
        self.client_cpu = client_cpu
        self.interrupted = interrupted
        self.connect_errors = list(connect_errors)

    @classmethod
    def from_runner(cls, runner: _Runner, *, method: str, url: str, label: str | None,
                    interrupted: bool) -> "BenchReport":
        import numpy as np
        import pandas as pd
        samples = pd.DataFrame({
            "start_s": np.frombuffer(runner.starts, dtype=np.float64).copy(),
            "latency_ms": np.frombuffer(runner.latencies, dtype=np.float64) * 1000.0,
            "status": np.frombuffer(runner.statuses, dtype=np.int32).astype(np.int64),
        })
        return cls(method=method, url=url, label=label, samples=samples, wall=runner.wall,
                   concurrency=runner.concurrency, client_cpu=runner.cpu,
                   interrupted=interrupted, connect_errors=runner.connect_errors)

    # -- numbers ----------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def throughput(self) -> float:
        """Completed requests per second of wall time."""
        return self.requests / self.wall if self.wall > 0 else 0.0

    @property
    def status_counts(self) -> dict[int, int]:
        counts = self.samples["status"].value_counts().sort_index()
        return {int(k): int(v) for k, v in counts.items()}

    @property
    def errors(self) -> dict[int, int]:
        """Requests that failed, by status (>= 400, or 0 for no response)."""
        return {s: c for s, c in self.status_counts.items() if s >= 400 or s == NO_RESPONSE}

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def percentiles(self) -> dict[str, float]:
        lat = self.samples["latency_ms"]
        if lat.empty:
            return {f"p{p}": float("nan") for p in PERCENTILES} | {"max": float("nan"),
                                                                    "mean": float("nan")}
        out = {f"p{p}": float(lat.quantile(p / 100)) for p in PERCENTILES}
        out["max"] = float(lat.max())
        out["mean"] = float(lat.mean())
        return out

    @property
    def generator_busy(self) -> float:
        """The load generator's CPU time over wall time; near 1.0 it was the bottleneck."""
        return self.client_cpu / self.wall if self.wall > 0 else 0.0

    @property
    def df(self):
        import pandas as pd
        pct = self.percentiles
        row = {"requests": self.requests, "concurrency": self.concurrency,
               "duration_s": round(self.wall, 3), "req_per_s": round(self.throughput, 1),
               "errors": self.error_count,
               **{f"{k}_ms": round(v, 3) for k, v in pct.items() if k != "mean"},
               "mean_ms": round(pct["mean"], 3)}
        return pd.DataFrame([row], index=pd.Index([self.label], name="run"))

    def notes(self) -> list[str]:
        notes = []
        if self.interrupted:
            notes.append("interrupted: partial results")
        if self.errors:
            parts = ", ".join(f"{'no response' if s == NO_RESPONSE else s}: {c}"
                              for s, c in self.errors.items())
            notes.append(f"errors by status: {parts}")
        if self.connect_errors:
            notes.append(f"first connection error: {self.connect_errors[0]}")
        if self.generator_busy > 0.9:
            notes.append(f"the load generator was busy {self.generator_busy:.0%} of the time; "
                         "throughput may be limited by the client, not the endpoint")
        return notes

    # -- plots and display ------------------------------------------------------------------

    def plot(self):
        """A matplotlib Figure: latency histogram and latency over time."""
        return _plot([self])

    def __repr__(self) -> str:
        pct = self.percentiles
        return (f"<BenchReport {self.label}: {self.requests} requests, "
                f"{self.throughput:,.0f} req/s, p50 {pct['p50']:.2f} ms, "
                f"p99 {pct['p99']:.2f} ms, errors {self.error_count}>")

    def _repr_pretty_(self, printer, cycle) -> None:
        text = f"{self.label}: {self.requests} requests in {self.wall:.2f} s " \
               f"({self.throughput:,.0f} req/s, concurrency {self.concurrency})\n"
        text += self.df.drop(columns=["requests", "concurrency", "duration_s"]).to_string()
        for note in self.notes():
            text += f"\nnote: {note}"
        printer.text(text)

    def _repr_html_(self) -> str:
        title = (f"<b>{html.escape(self.label)}</b> &middot; {self.requests:,} requests in "
                 f"{self.wall:.2f} s &middot; <b>{self.throughput:,.0f} req/s</b> &middot; "
                 f"concurrency {self.concurrency}")
        return _html_block(title, self.df, self.notes(), self.plot())


class Comparison:
    """Several reports side by side: ``df`` has one row per run; ``plot()`` overlays them."""

    def __init__(self, reports: Sequence[BenchReport]):
        self.reports = list(reports)

    @property
    def df(self):
        import pandas as pd
        return pd.concat([r.df for r in self.reports])

    def plot(self):
        return _plot(self.reports)

    def __repr__(self) -> str:
        return f"<Comparison of {len(self.reports)} runs>"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(self.df.to_string())

    def _repr_html_(self) -> str:
        notes = [f"{r.label}: {n}" for r in self.reports for n in r.notes()]
        return _html_block(f"<b>{len(self.reports)} runs compared</b>", self.df, notes,
                           self.plot())


def compare(*reports: BenchReport, labels: Sequence[str] | None = None) -> Comparison:
    """Put several :class:`BenchReport` side by side (e.g. before and after an edit)."""
    if len(reports) == 1 and isinstance(reports[0], (list, tuple)):
        reports = tuple(reports[0])
    if not reports:
        raise ValueError("compare() needs at least one report")
    if labels is not None:
        if len(labels) != len(reports):
            raise ValueError(f"{len(labels)} labels for {len(reports)} reports")
        relabelled = []
        for report, label in zip(reports, labels):
            copy = BenchReport(method=report.method, url=report.url, label=label,
                               samples=report.samples, wall=report.wall,
                               concurrency=report.concurrency, client_cpu=report.client_cpu,
                               interrupted=report.interrupted,
                               connect_errors=report.connect_errors)
            relabelled.append(copy)
        reports = tuple(relabelled)
    seen = [r.label for r in reports]
    if len(set(seen)) != len(seen):
        reports = tuple(BenchReport(method=r.method, url=r.url, label=f"{i}: {r.label}",
                                    samples=r.samples, wall=r.wall, concurrency=r.concurrency,
                                    client_cpu=r.client_cpu, interrupted=r.interrupted)
                        for i, r in enumerate(reports))
    return Comparison(reports)


def _plot(reports: Sequence[BenchReport]):
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4), layout="constrained")
    hist_ax, time_ax = fig.subplots(1, 2)
    all_lat = np.concatenate([r.samples["latency_ms"].to_numpy() for r in reports]) \
        if reports else np.array([])
    top = float(np.percentile(all_lat, 99.5)) if all_lat.size else 1.0
    bins = np.linspace(0, max(top, 1e-3), 60)
    single = len(reports) == 1
    for i, report in enumerate(reports):
        lat = report.samples["latency_ms"].to_numpy()
        colour = f"C{i}"
        if lat.size:
            hist_ax.hist(np.clip(lat, 0, bins[-1]), bins=bins, color=colour,
                         alpha=0.75 if single else 0.9, histtype="bar" if single else "step",
                         label=report.label, linewidth=1.5)
        if single:
            for name, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
                value = report.percentiles[name]
                if value == value:  # not NaN
                    hist_ax.axvline(value, color="black", linestyle=style, linewidth=1,
                                    label=f"{name} {value:.2f} ms")
        ok = report.samples["status"].between(1, 399).to_numpy()
        time_ax.plot(report.samples["start_s"].to_numpy()[ok], lat[ok], ".", markersize=2,
                     alpha=0.5, color=colour, label=None if single else report.label)
        if (~ok).any():
            time_ax.plot(report.samples["start_s"].to_numpy()[~ok], lat[~ok], "x",
                         markersize=4, color="red", label="errors" if i == 0 else None)
    hist_ax.set_xlabel("latency (ms)" + (", clipped at p99.5" if all_lat.size else ""))
    hist_ax.set_ylabel("requests")
    hist_ax.set_title("latency histogram")
    hist_ax.legend(fontsize=8)
    time_ax.set_xlabel("time since start (s)")
    time_ax.set_ylabel("latency (ms)")
    time_ax.set_title("latency over time")
    if not single or time_ax.get_legend_handles_labels()[0]:
        time_ax.legend(fontsize=8, markerscale=3)
    return fig


def figure_png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return buf.getvalue()


def _html_block(title: str, df, notes: Sequence[str], fig) -> str:
    png = base64.b64encode(figure_png(fig)).decode("ascii")
    notes_html = "".join(f"<div style='color:#bc4c00'>{html.escape(n)}</div>" for n in notes)
    return (f"<div class='edgebook-bench'><div>{title}</div>{notes_html}"
            f"{df.to_html(border=0)}"
            f"<img src='data:image/png;base64,{png}' style='max-width:100%'/></div>")
