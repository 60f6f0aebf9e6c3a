"""Load generators for the benchmark harness: ``wrk`` when installed, else
``edgebook.loadgen`` (the generator behind the notebook's ``edgebook.bench``) spread over
one or more processes.

Both return the same result dict::

    {"tool", "connections", "duration", "requests", "ok", "non2xx", "errors", "rps",
     "p50_ms", "p90_ms", "p99_ms", "max_ms", "loadgen_cpu_s", "loadgen_cpu_us_per_req"}

Every load is bounded: a duration (seconds) always, a request count where the tool can
(the Python generator). Targets must be loopback addresses; anything else is refused.

The Python generator: asyncio raw sockets, HTTP/1.1 keep-alive, one request in flight per
connection, connections spread over ``processes`` OS processes. It records every request
(start time on the shared monotonic clock, latency, status) so callers can look at a time
window (hot reload). Its own CPU time is reported with every run.
"""

from __future__ import annotations

import array
import asyncio
import math
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

from edgebook import loadgen as generator

MAX_DURATION = 120.0
MAX_REQUESTS = 2_000_000


class LoadError(Exception):
    pass


def check_loopback(host: str) -> None:
    try:
        generator.check_loopback(host)
    except generator.LoadError as exc:
        raise LoadError(f"refusing to load {host}: {exc}") from None


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def build_request(host: str, port: int, path: str, method: str = "GET",
                  body: bytes | None = None, content_type: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return raw + (body or b"")


percentile = generator.percentile


def summarize(latencies: list[float]) -> dict[str, float]:
    values = sorted(latencies)
    return {"p50_ms": percentile(values, 50) * 1e3, "p90_ms": percentile(values, 90) * 1e3,
            "p99_ms": percentile(values, 99) * 1e3,
            "max_ms": (values[-1] * 1e3) if values else math.nan}


# -- the Python generator (edgebook.loadgen in several processes) ------------------------------

def _child(args: tuple, out) -> None:
    host, port, request, connections, duration, max_requests, t0, timeout, start_at = args
    # time.monotonic() values from the parent, as perf_counter values in this process
    shift = time.perf_counter() - time.monotonic()
    load = generator.Load(host, port, request, max_requests, connections, duration, timeout,
                          t0=t0 + shift, start_at=start_at + shift)
    before = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(load.run())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.send((load.starts.tobytes(), load.latencies.tobytes(), load.statuses.tobytes(), cpu))
    out.close()


def run_python(url: str, *, connections: int, duration: float, max_requests: int = MAX_REQUESTS,
               method: str = "GET", body: bytes | None = None, content_type: str | None = None,
               processes: int = 1, timeout: float = 10.0, keep_samples: bool = False,
               t0: float | None = None) -> dict[str, Any]:
    """Runs the Python generator; ``t0`` (time.monotonic) is the zero of sample times."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    check_loopback(host)
    duration = min(duration, MAX_DURATION)
    max_requests = min(max_requests, MAX_REQUESTS)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    request = build_request(host, port, path, method, body, content_type)
    processes = max(1, min(processes, connections))
    ctx = multiprocessing.get_context("fork")
    start_at = time.monotonic() + 0.2  # children start together
    t0 = start_at if t0 is None else t0
    children = []
    per_conn = [connections // processes + (1 if i < connections % processes else 0)
                for i in range(processes)]
    per_req = math.ceil(max_requests / processes)
    for conns in per_conn:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(
            (host, port, request, conns, duration, per_req, t0, timeout, start_at), send),
            daemon=True)
        proc.start()
        send.close()
        children.append((proc, recv))
    starts, lats, statuses = array.array("d"), array.array("d"), array.array("i")
    cpu = 0.0
    for proc, recv in children:
        try:
            if not recv.poll(duration + timeout + 30):
                raise LoadError("a load generator process did not report")
            s, l, st, c = recv.recv()
        finally:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        starts.frombytes(s)
        lats.frombytes(l)
        statuses.frombytes(st)
        cpu += c
    wall = (max((s + l for s, l in zip(starts, lats)), default=0.0) + t0) - start_at
    wall = max(wall, 1e-9)
    n = len(lats)
    ok = sum(1 for s in statuses if 200 <= s < 300)
    errors = sum(1 for s in statuses if s == 0)
    result = {"tool": f"python x{processes}", "connections": connections,
              "duration": wall, "requests": n, "ok": ok, "non2xx": n - ok - errors,
              "errors": errors, "rps": n / wall,
              **summarize(list(lats)),
              "loadgen_cpu_s": cpu, "loadgen_cpu_us_per_req": cpu / n * 1e6 if n else math.nan}
    if keep_samples:
        result["samples"] = (starts, lats, statuses)
    return result


# -- wrk --------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m|h)$", text.strip())
    if not match:
        return math.nan
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, *, connections: int, duration: float, method: str = "GET",
            body: bytes | None = None, content_type: str | None = None,
            threads: int | None = None, timeout: float = 10.0) -> dict[str, Any]:
    parts = urlsplit(url)
    check_loopback(parts.hostname)
    seconds = max(1, int(round(min(duration, MAX_DURATION))))
    threads = threads or min(connections, 2)
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = os.path.join(tmp, "request.lua")
        lines = [f'wrk.method = "{method}"']
        if body is not None:
            body_path = os.path.join(tmp, "body.bin")
            with open(body_path, "wb") as handle:
                handle.write(body)
            lines.append(f'local f = io.open("{body_path}", "rb")')
            lines.append("wrk.body = f:read(\"*a\")")
            lines.append("f:close()")
            if content_type:
                lines.append(f'wrk.headers["Content-Type"] = "{content_type}"')
        with open(script, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                "--latency", "--timeout", f"{int(timeout)}s", "-s", script, url]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=seconds + timeout + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise LoadError("wrk did not finish in time") from None
    # communicate() reaped wrk; its CPU is in our children's rusage, taken by the caller
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise LoadError(f"wrk failed ({proc.returncode}): {text[-500:]}")
    return parse_wrk(text, connections)


def parse_wrk(text: str, connections: int) -> dict[str, Any]:
    result: dict[str, Any] = {"tool": "wrk", "connections": connections}
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise LoadError(f"cannot read wrk's output: {text[-500:]}")
    result["requests"] = int(match.group(1))
    result["duration"] = _ms(match.group(2) + match.group(3)) / 1e3
    errors = 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if match:
        errors = sum(int(g) for g in match.groups())
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(match.group(1)) if match else 0
    result.update(errors=errors, non2xx=non2xx, ok=result["requests"] - non2xx)
    result["rps"] = result["requests"] / result["duration"] if result["duration"] else math.nan
    for pct, key in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        result[key] = _ms(match.group(1)) if match else math.nan
    match = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    result["max_ms"] = _ms(match.group(1)) if match else math.nan
    return result


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(url: str, *, tool: str, connections: int, duration: float, **kwargs: Any) -> dict:
    """One bounded load with ``tool`` ("wrk" or "python"); adds the generator's CPU time."""
    if tool == "wrk":
        kwargs.pop("max_requests", None)
        kwargs.pop("processes", None)
        kwargs.pop("keep_samples", None)
        before = children_cpu()
        result = run_wrk(url, connections=connections, duration=duration, **kwargs)
        cpu = children_cpu() - before
        result["loadgen_cpu_s"] = cpu
        result["loadgen_cpu_us_per_req"] = cpu / result["requests"] * 1e6 \
            if result["requests"] else math.nan
        return result
    return run_python(url, connections=connections, duration=duration, **kwargs)
