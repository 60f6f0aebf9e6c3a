"""Scale-out benchmark: deploy-to-all-gateways latency and three gateways against one.

    python bench/scaleout_bench.py [--deploys 20] [--duration 5]

Starts a real PostgreSQL and an S3-compatible server (moto) on loopback, a builder and three
gateways (separate processes and data dirs), then measures:

- deploy-to-all latency: from the deploy's answer on gateway 1 to the new revision answering
  on all three (p50 / p99 over ``--deploys`` deploys; each deploy a new source, so a real
  build through the queue, a real upload and real fetches);
- throughput of the hello handler on one gateway, then on three at once with the same total
  connections (the baseline is the one gateway, measured in the same run).

On a small machine the three gateways, their workers and the load generator share the same
cores: the ratio says what spreading costs or gains there, not what three machines give.
Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench import loadgen  # noqa: E402
from cluster_helpers import Node, handler, wait_message  # noqa: E402
from servers import MotoServer, PostgresServer, _server  # noqa: E402

BUCKET = "edgebook-bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def load(urls: list[str], connections: int, duration: float) -> dict:
    """Load every URL at once, ``connections`` split between them; totals summed."""
    results: list[dict] = []

    def one(url: str, share: int) -> None:
        results.append(loadgen.run(url, tool="python", connections=share, duration=duration))

    shares = [connections // len(urls) + (1 if i < connections % len(urls) else 0)
              for i in range(len(urls))]
    threads = [threading.Thread(target=one, args=(u, s)) for u, s in zip(urls, shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"rps": sum(r["rps"] for r in results),
            "errors": sum(r["errors"] + r["non2xx"] for r in results),
            "p99_ms": max(r["p99_ms"] for r in results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=12)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="edgebook-scaleout-bench-")
    pg = _server(PostgresServer)
    moto = _server(MotoServer)
    nodes: list[Node] = []
    try:
        import boto3
        boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                     aws_access_key_id=moto.access_key,
                     aws_secret_access_key=moto.secret_key).create_bucket(Bucket=BUCKET)
        aws = {"AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key,
               "AWS_REGION": "us-east-1"}

        def node(name: str, role: str = "gateway") -> Node:
            made = Node(os.path.join(tmp, name), pg.dsn(), f"s3://{BUCKET}/bench", moto.url,
                        aws, role=role)
            nodes.append(made)
            return made.start()

        node("builder", "builder")
        gateways = [node("g1"), node("g2"), node("g3")]
        latencies = []
        for index in range(args.deploys):
            message = f"deploy {index}"
            status, body, _ = gateways[0].api("PUT", "/api/endpoints/hello", {
                "method": "GET", "path": "/hello", "source": handler(message)})
            if status not in (200, 201):
                raise SystemExit(f"deploy failed: {status} {body}")
            seen = wait_message(gateways, "/hello", message, timeout=30)
            latencies.append(max(seen.values()))
        print(f"deploy -> all three serve, over {len(latencies)} deploys: "
              f"p50 {percentile(latencies, 50) * 1000:.0f} ms, "
              f"p99 {percentile(latencies, 99) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")
        one = load([gateways[0].url + "/hello"], args.connections, args.duration)
        three = load([g.url + "/hello" for g in gateways], args.connections, args.duration)
        print(f"hello, {args.connections} connections, {args.duration:g} s each:")
        print(f"  one gateway     {one['rps']:8.0f} req/s  p99 {one['p99_ms']:.1f} ms  "
              f"errors {one['errors']}")
        print(f"  three gateways  {three['rps']:8.0f} req/s  p99 {three['p99_ms']:.1f} ms  "
              f"errors {three['errors']}  ({three['rps'] / one['rps']:.2f}x the one, "
              f"{os.cpu_count()} cores shared by everything)")
    finally:
        for made in nodes:
            made.stop()
        moto.cleanup()
        pg.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
