"""What one service call through the gateway adds to a request, against the same call made
directly from Python.

Starts ``edgebook serve`` and a Redis server on loopback, deploys two release handlers that
differ only in ``CALLS`` sequential ``RedisPool::get`` calls, and measures both with
sequential requests, alternating; the difference of their latencies divided by ``CALLS`` is
the cost of one call (worker -> gateway frame, the pooled redis-py call, the reply frame).
Many calls per request keep that difference well above the noise of one request's latency.
The baseline is redis-py's own GET, on one connection, in the same run.

    .venv/bin/python bench/service_call_bench.py [-n 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

PLAIN = """use rust_edge_gateway_sdk::prelude::*;
fn handle(_req: Request) -> Result<Response, HandlerError> {
    Ok(Response::ok(json!({"value": null})))
}
"""
CALLS = 20
WITH_CALLS = """use rust_edge_gateway_sdk::prelude::*;
fn handle(_req: Request) -> Result<Response, HandlerError> {
    let cache = RedisPool { pool_id: "cache".to_string() };
    let mut value = None;
    for _ in 0..%d {
        value = cache.get("bench-key")?;
    }
    Ok(Response::ok(json!({"value": value})))
}
""" % CALLS


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="requests per measurement")
    args = parser.parse_args()

    import redis
    from servers import RedisServer
    import edgebook
    from edgebook.client import AdminClient
    from edgebook.discovery import read_runtime

    server = RedisServer()
    server.start()
    data_dir = os.path.join(tempfile.mkdtemp(prefix="edgebook-svcbench-"), ".edgebook")
    gateway = subprocess.Popen([sys.executable, "-m", "edgebook", "serve", "--data-dir",
                                data_dir, "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        gateway.stdout.readline()
        info = read_runtime(data_dir)
        admin = AdminClient(info.admin_url, info.token)
        admin.put_service("cache", "redis", server.config())
        admin.deploy("plain", "GET", "/plain", PLAIN, profile="release")
        admin.deploy("calls", "GET", "/calls", WITH_CALLS, profile="release",
                     services=["cache"])
        direct = redis.Redis(**{k: v for k, v in server.config().items()})
        direct.set("bench-key", "x" * 16)

        def run(path: str, n: int) -> list[float]:
            report = edgebook.bench("GET", info.url + path, n=n, concurrency=1,
                                    progress=False)
            if report.error_count:
                raise SystemExit(f"{path}: {report.error_count} failed requests")
            return [ms * 1e3 for ms in report.samples["latency_ms"].tolist()]

        def redis_direct() -> list[float]:
            out = []
            for _ in range(args.n):
                started = time.perf_counter()
                direct.get("bench-key")
                out.append((time.perf_counter() - started) * 1e6)
            return out

        run("/plain", 100), run("/calls", 100)  # warm both
        plain: list[float] = []
        calls: list[float] = []
        for _ in range(4):  # alternate, so drift in the machine's load hits both
            plain += run("/plain", args.n // 4)
            calls += run("/calls", args.n // 4)
        base = redis_direct()
        (p50, p99), (c50, c99), (b50, b99) = quantiles(plain), quantiles(calls), quantiles(base)
        one50, one99 = (c50 - p50) / CALLS, (c99 - p99) / CALLS
        print(f"{'measurement':<48} {'p50 us':>9} {'p99 us':>9}")
        print(f"{'request, handler without service calls':<48} {p50:9.0f} {p99:9.0f}")
        print(f"{f'request, handler with {CALLS} RedisPool::get calls':<48} {c50:9.0f} {c99:9.0f}")
        print(f"{'one call through the gateway (difference / %d)' % CALLS:<48} "
              f"{one50:9.0f} {one99:9.0f}")
        print(f"{'redis-py GET directly (baseline)':<48} {b50:9.0f} {b99:9.0f}")
        print(f"ratio, one call through the gateway / direct: p50 {one50 / b50:.2f}x, "
              f"p99 {one99 / b99:.2f}x  ({args.n} requests each, sequential)")
    finally:
        gateway.terminate()
        gateway.wait(30)
        gateway.stdout.close()
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
