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
import sys
import threading
import time
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from .. import loadgen
from ..servertiming import parse_server_timing
from . import session as session_mod
from .progress import BenchProgress, widgets_wanted
from .request import _NO_JSON, Params, build_request, is_absolute, resolve_url

MAX_REQUESTS = 1_000_000
MAX_DURATION = 600.0
MAX_CONCURRENCY = 512
#: A run with neither ``n`` nor ``duration`` lasts this long (seconds): long enough for
#: stable percentiles, short enough to wait for.
DEFAULT_DURATION = 2.0

NO_RESPONSE = loadgen.NO_RESPONSE
PERCENTILES = (50, 90, 99)


class BenchError(loadgen.LoadError):
    """A load test that cannot start (bad target, nothing listening)."""


# -- public API ------------------------------------------------------------------------------

def check_loopback(host: str) -> None:
    """Raise ``BenchError`` unless every address of ``host`` is a loopback address."""
    try:
        loadgen.check_loopback(host)
    except loadgen.LoadError as exc:
        raise BenchError(f"bench sends {exc}; pass allow_remote=True to load a host you are "
                         "responsible for") from None


def bench(method: str, path: str, *, n: int | None = None, concurrency: int = 8,
          duration: float | None = None, json: Any = _NO_JSON, data: Any = None,
          headers: Mapping[str, str] | None = None, params: Params = None,
          timeout: float = 10.0, label: str | None = None, allow_remote: bool = False,
          progress: bool | None = None, base_url: str | None = None,
          session=None) -> "BenchReport":
    """Send requests over ``concurrency`` keep-alive connections for ``duration`` seconds
    (default 2), or until ``n`` requests were sent, whichever comes first (``n`` alone: until
    ``n`` were sent). Latency is measured at the client: from writing the request to reading
    the whole response. Both are capped (``MAX_REQUESTS``, ``MAX_DURATION``). The run
    happens on a private thread; a KeyboardInterrupt stops it and the partial report is
    returned (``report.interrupted`` is True). ``progress`` shows a live progress bar for
    runs longer than half a second (default: when a widget frontend is present).
    """
    if n is None and duration is None:
        duration = DEFAULT_DURATION
    if n is None:
        n = MAX_REQUESTS
    if not 1 <= n <= MAX_REQUESTS:
        raise ValueError(f"n must be between 1 and {MAX_REQUESTS:,}, not {n}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}")
    if duration is not None and not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be between 0 and {MAX_DURATION:g} seconds, not {duration}")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if session is None and base_url is None and not is_absolute(path):
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
    runner = loadgen.Load(host, port, _encode(sent, parts), n, concurrency, duration, timeout,
                          keep_timings=True)
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


def _progress_ticker(runner: loadgen.Load):
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    if not widgets_wanted(get_ipython()):
        return None
    return BenchProgress(runner.n if runner.n < MAX_REQUESTS else None, runner.duration)


def _run_in_thread(runner: loadgen.Load, ticker=None) -> bool:
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
                 connect_errors: Sequence[str] = (), phases=None):
        self.method = method
        self.url = url
        self.label = label or f"{method} {urlsplit(url).path}"
        self.samples = samples
        self.wall = wall
        self.concurrency = concurrency
        self.client_cpu = client_cpu
        self.interrupted = interrupted
        self.connect_errors = list(connect_errors)
        #: Per request (index of ``samples``) the gateway's phases in ms, from Server-Timing;
        #: None when the gateway sent none.
        self.phases = phases

    @classmethod
    def from_runner(cls, runner: loadgen.Load, *, method: str, url: str, label: str | None,
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
                   interrupted=interrupted, connect_errors=runner.connect_errors,
                   phases=_phase_frame(runner.timings or [], len(samples)))

    # -- where the time went -----------------------------------------------------------------

    def breakdown(self):
        """What the p50, p90 and p99 requests spent in each phase (mean ms of the requests
        around each percentile), from the gateway's Server-Timing; None without it.

        ``outside_ms`` is the client's latency minus the gateway's time: the network, the
        response write and the client itself."""
        return _breakdown(self.samples, self.phases)

    def reading(self) -> str | None:
        """One line on what dominates the p99 request, and what would help."""
        return _reading(self.breakdown())

    def plot_breakdown(self):
        """A stacked bar per percentile: where the time of those requests went."""
        return _plot_breakdown(self.breakdown(), self.label)

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
               f"({self.throughput:,.0f} req/s, concurrency {self.concurrency}; latency " \
               f"measured at the client)\n"
        text += self.df.drop(columns=["requests", "concurrency", "duration_s"]).to_string()
        for note in self.notes():
            text += f"\nnote: {note}"
        printer.text(text)

    def _repr_html_(self) -> str:
        breakdown = self.breakdown()
        extra = ""
        if breakdown is not None:
            reading = self.reading()
            png = base64.b64encode(figure_png(self.plot_breakdown())).decode("ascii")
            extra = (f"<details open><summary>where the time went (gateway phases by "
                     f"percentile)</summary><div><b>{html.escape(reading or '')}</b></div>"
                     f"{breakdown.round(3).to_html(border=0)}"
                     f"<img src='data:image/png;base64,{png}' style='max-width:100%'/>"
                     "</details>")
        return self._html_main() + extra

    def _html_main(self) -> str:
        title = (f"<b>{html.escape(self.label)}</b> &middot; {self.requests:,} requests in "
                 f"{self.wall:.2f} s &middot; <b>{self.throughput:,.0f} req/s</b> &middot; "
                 f"concurrency {self.concurrency} &middot; latency measured at the client")
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
                    hist_ax.axvline(value, color=INK, linestyle=style, linewidth=1,
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
    _for_both_themes(fig)
    return fig


#: Text, axes and reference lines of plots: a mid grey, readable on JupyterLab's light
#: and dark backgrounds alike (the figure itself is transparent).
INK = "#8c8c8c"


def _for_both_themes(fig) -> None:
    fig.patch.set_alpha(0.0)
    for ax in fig.axes:
        ax.set_facecolor("none")
        ax.tick_params(colors=INK)
        for spine in ax.spines.values():
            spine.set_color(INK)
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            text.set_color(INK)
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_alpha(0.0)
            legend.get_frame().set_edgecolor(INK)
            for text in legend.get_texts():
                text.set_color(INK)


def figure_png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return buf.getvalue()


#: How the summary's columns read in HTML: counts with separators, rates whole, times in
#: milliseconds to the hundredth (the clock's resolution is far finer; the eye is not).
_FORMATS = {"requests": "{:,.0f}", "concurrency": "{:,.0f}", "errors": "{:,.0f}",
            "duration_s": "{:,.2f}", "req_per_s": "{:,.0f}"}


def _formatters(df) -> dict:
    return {column: (_FORMATS.get(column) or ("{:,.2f}" if column.endswith("_ms") else "{}"))
            .format for column in df.columns}


def _html_block(title: str, df, notes: Sequence[str], fig) -> str:
    png = base64.b64encode(figure_png(fig)).decode("ascii")
    notes_html = "".join(f"<div style='color:var(--jp-warn-color1, #bc4c00)'>"
                         f"{html.escape(n)}</div>" for n in notes)
    return (f"<div class='edgebook-bench'><div>{title}</div>{notes_html}"
            f"{df.to_html(border=0, formatters=_formatters(df), na_rep='–')}"
            f"<img src='data:image/png;base64,{png}' style='max-width:100%'/></div>")


# -- the latency breakdown ----------------------------------------------------------------------

PHASE_COLUMNS = ("recv_ms", "route_ms", "queue_ms", "worker_ms", "services_ms", "gateway_ms")
#: Which requests stand for each percentile: those whose latency rank falls in the band.
BANDS = {"p50": (45, 55), "p90": (85, 95), "p99": (98.5, 100)}


def _phase_frame(timings, count: int):
    """A DataFrame of each request's phases (ms) from its Server-Timing, or None if no
    response carried one."""
    import pandas as pd
    rows, index = [], []
    for position, raw in timings:
        if raw is None or position >= count:
            continue
        values = dict.fromkeys(PHASE_COLUMNS, 0.0)
        for entry in parse_server_timing(raw.decode("latin-1")):
            if entry.duration_ms is None:
                continue
            if entry.name == "total":
                values["gateway_ms"] = entry.duration_ms
            elif f"{entry.name}_ms" in values:
                values[f"{entry.name}_ms"] = entry.duration_ms
            else:
                values["services_ms"] += entry.duration_ms
        rows.append(values)
        index.append(position)
    if not rows:
        return None
    return pd.DataFrame(rows, index=index, columns=list(PHASE_COLUMNS))


def _breakdown(samples, phases):
    import numpy as np
    import pandas as pd
    if phases is None or phases.empty:
        return None
    latency = samples["latency_ms"].reindex(phases.index)
    ranks = latency.rank(pct=True) * 100
    out = {}
    for name, (low, high) in BANDS.items():
        chosen = phases[(ranks >= low) & (ranks <= high)]
        if chosen.empty:  # few requests: the one nearest the percentile
            target = np.percentile(latency, (low + high) / 2)
            chosen = phases.loc[[(latency - target).abs().idxmin()]]
        row = chosen.mean()
        row["latency_ms"] = latency.loc[chosen.index].mean()
        row["outside_ms"] = max(row["latency_ms"] - row["gateway_ms"], 0.0)
        row["requests"] = len(chosen)
        out[name] = row
    frame = pd.DataFrame(out).T
    frame["requests"] = frame["requests"].astype(int)
    return frame[["latency_ms", "recv_ms", "route_ms", "queue_ms", "worker_ms", "services_ms",
                  "outside_ms", "requests"]]


#: What each part means for the user, by what dominates.
_ADVICE = {
    "queue_ms": "waiting for a free worker: more workers would help",
    "worker_ms": "in the handler itself: make the handler faster",
    "services_ms": "in service calls: look at the queries (an index, fewer round trips)",
    "recv_ms": "reading the request body: the client is slow to send",
    "route_ms": "choosing the endpoint: many routes or a very long path",
    "outside_ms": "outside the gateway (network, client): more workers will not help",
}


def _reading(breakdown) -> str | None:
    if breakdown is None:
        return None
    row = breakdown.loc["p99"]
    parts = {"queue_ms": row.queue_ms, "recv_ms": row.recv_ms, "route_ms": row.route_ms,
             "services_ms": row.services_ms,
             "worker_ms": max(row.worker_ms - row.services_ms, 0.0),
             "outside_ms": row.outside_ms}
    total = sum(parts.values()) or 1.0
    top = max(parts, key=parts.get)
    return f"p99 is {parts[top] / total:.0%} {_ADVICE[top].split(':')[0]}:" \
           f"{_ADVICE[top].split(':', 1)[1]}"


def _plot_breakdown(breakdown, label: str):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 2.2))
    fig.patch.set_alpha(0.0)
    ax = fig.add_subplot()
    ax.patch.set_alpha(0.0)
    if breakdown is None:
        return fig
    parts = [("route", "route_ms"), ("recv", "recv_ms"), ("queue", "queue_ms"), ("handler", None),
             ("services", "services_ms"), ("outside", "outside_ms")]
    left = [0.0] * len(breakdown)
    for name, column in parts:
        if column is None:
            values = (breakdown["worker_ms"] - breakdown["services_ms"]).clip(lower=0).tolist()
        else:
            values = breakdown[column].tolist()
        ax.barh(list(breakdown.index), values, left=left, label=name)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("ms (mean of the requests at each percentile)")
    ax.set_title(f"{label}: where the time went", fontsize=9)
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncols=6, loc="lower right")
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    fig.tight_layout()
    return fig
