"""Added latency of one service call through ServiceManager vs. the client library directly.

Starts what it needs on loopback (SQLite always; Redis and PostgreSQL when their server
programs are installed, through tests/servers.py), then times N sequential calls each way
and prints median and p99 per operation, with ratios. The gateway path is
``ServiceManager.call`` with a service_call frame (binding check, argument checks, pooled
connector, JSON-safe rows); the direct path is the same client library used straight from
Python. Worker pipe hops are not included.

    python bench/services_bench.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from edgebook.services import ServiceManager  # noqa: E402


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(fn, calls: int) -> list[float]:
    for _ in range(min(200, calls)):
        await fn()
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        await fn()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def gateway_call(manager: ServiceManager, service: str, op: str, args: dict):
    frame = {"type": "service_call", "request_id": "bench", "call_id": 1, "service": service,
             "op": op, "args": args}

    async def call():
        reply = await manager.call("bench", {service}, frame)
        assert reply["ok"], reply
    return call


async def sqlite_cases(manager: ServiceManager, data_dir: str):
    await manager.put("lite", "sqlite", {"path": "bench.sqlite3"})
    setup = gateway_call(manager, "lite", "db.execute", {
        "sql": "create table if not exists kv (k text primary key, v text)"})
    await setup()
    await gateway_call(manager, "lite", "db.execute", {
        "sql": "insert or replace into kv values ('a', 'b')"})()
    direct = sqlite3.connect(os.path.join(data_dir, "bench.sqlite3"), isolation_level=None)

    async def direct_select():
        direct.execute("select v from kv where k = ?", ("a",)).fetchall()
    via = gateway_call(manager, "lite", "db.query",
                       {"sql": "select v from kv where k = ?", "params": ["a"]})
    yield "sqlite", "db.query (1 row)", direct_select, via
    direct.close()


async def redis_cases(manager: ServiceManager):
    import redis.asyncio as aioredis
    from servers import RedisServer
    server = RedisServer()
    server.start()
    try:
        await manager.put("cache", "redis", server.config())
        client = aioredis.Redis(port=server.port, password=server.password,
                                decode_responses=True)
        await client.set("k", "v")

        async def direct_get():
            await client.get("k")
        yield "redis", "redis.get", direct_get, gateway_call(manager, "cache", "redis.get",
                                                             {"key": "k"})
        await client.aclose()
    finally:
        await manager.remove("cache")
        server.cleanup()


async def postgres_cases(manager: ServiceManager):
    import asyncpg
    from servers import PostgresServer
    server = PostgresServer()
    server.start()
    try:
        await manager.put("pg", "postgres", server.config())
        pool = await asyncpg.create_pool(server.dsn(), min_size=1, max_size=2)
        await pool.execute("create table kv (k text primary key, v text)")
        await pool.execute("insert into kv values ('a', 'b')")

        async def direct_select():
            await pool.fetch("select v from kv where k = $1", "a")
        yield "postgres", "db.query (1 row)", direct_select, gateway_call(
            manager, "pg", "db.query", {"sql": "select v from kv where k = $1", "params": ["a"]})
        await pool.close()
    finally:
        await manager.remove("pg")
        server.cleanup()


async def main(calls: int) -> None:
    data_dir = tempfile.mkdtemp(prefix="edgebook-bench-")
    manager = ServiceManager(data_dir)
    rows = []

    async def measure(cases):
        async for service, op, direct, via in cases:
            d, g = await timed(direct, calls), await timed(via, calls)
            rows.append((service, op, statistics.median(d), percentile(d, 0.99),
                         statistics.median(g), percentile(g, 0.99)))

    await measure(sqlite_cases(manager, data_dir))
    for name, cases in (("redis", redis_cases), ("postgres", postgres_cases)):
        try:
            await measure(cases(manager))
        except BaseException as exc:  # a missing server program skips that service
            if type(exc).__name__ not in ("Skipped", "Failed", "RuntimeError"):
                raise
            print(f"{name}: skipped ({exc})")
    await manager.close()
    shutil.rmtree(data_dir, ignore_errors=True)

    print(f"\n{calls} sequential calls each, microseconds per call\n")
    header = ("service", "op", "direct p50", "direct p99", "gateway p50", "gateway p99",
              "added p50", "ratio p50", "ratio p99")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for service, op, d50, d99, g50, g99 in rows:
        print(f"| {service} | {op} | {d50:.1f} | {d99:.1f} | {g50:.1f} | {g99:.1f} | "
              f"{g50 - d50:+.1f} | {g50 / d50:.2f}x | {g99 / d99:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args().calls))
