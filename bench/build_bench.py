"""Build latency benchmark: how long from a cell's source to a runnable worker binary.

Measures, for a handler using ``json!`` and a ``#[derive(Deserialize)]`` struct:

* a cache hit, a one-line edit (dev), a release build after an edit, a brand-new handler
  in a fresh data dir, all against the shared (warm) target dir;
* a truly cold build into an empty target dir (once);
* the original gateway's approach: one target dir per endpoint, release, fat LTO,
  ``codegen-units = 1`` (cold, then after a one-line edit);
* requests per second through a dev and a release worker, to judge whether hot-swapping
  to the release build pays off.

Usage: ``python bench/build_bench.py [--skip-cold] [--runs N]``. Uses
``EDGEBOOK_TARGET_DIR`` (default ``~/.cache/edgebook/target``) as the warm target dir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgebook import protocol
from edgebook.build.builder import BuildRequest, Builder  # noqa: E402
from edgebook.paths import target_dir as default_target_dir  # noqa: E402
from edgebook.build.sdk import find_sdk_dir, sdk_info  # noqa: E402

HANDLER = """\
use rust_edge_gateway_sdk::prelude::*;

#[derive(Deserialize)]
struct Order {
    item: String,
    qty: u32,
    price_cents: u64,
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    let order: Order = req.json()?;
    let total = order.price_cents * order.qty as u64;
    Ok(Response::ok(json!({
        "item": order.item,
        "qty": order.qty,
        "total_cents": total,
        "revision": REVISION,
    })))
}
"""


def source(revision: int) -> str:
    """The handler with a one-line difference per revision."""
    return HANDLER + f"\nconst REVISION: u32 = {revision};\n"


def build(builder: Builder, name: str, text: str, profile: str = "dev"):
    result = asyncio.run(builder.build(BuildRequest(name, text, profile=profile)))
    if not result.ok:
        sys.exit(f"build failed ({result.status}):\n{result.log[-4000:]}")
    return result


def timed(builder: Builder, name: str, text: str, profile: str = "dev") -> float:
    started = time.perf_counter()
    build(builder, name, text, profile)
    return time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _throughput(binary: Path, requests: int) -> tuple[float, float]:
    proc = await asyncio.create_subprocess_exec(
        str(binary), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    reader = protocol.FrameReader(proc.stdout)
    await reader.read()  # ready
    body = '{"item":"widget","qty":3,"price_cents":1999}'
    frames = b"".join(protocol.encode_fast({
        "type": "request", "request_id": str(i), "method": "POST", "path": "/orders",
        "query": {}, "headers": {"content-type": "application/json"}, "params": {},
        "body": body, "body_encoding": "utf8", "client_ip": None}) for i in range(requests))
    started = time.perf_counter()
    proc.stdin.write(frames)
    for _ in range(requests):
        await reader.read()
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(proc.pid)
    proc.stdin.close()
    await proc.wait()
    return requests / elapsed, cpu / requests * 1e6


def throughput(binary: Path, requests: int = 20000) -> tuple[float, float]:
    """Requests per second through one worker, and the worker's CPU microseconds each."""
    return asyncio.run(_throughput(binary, requests))


def original_approach(work: Path, sdk_dir: Path) -> tuple[float, float]:
    """The original's build: own package and target dir, release, fat LTO, one CGU."""
    sdk = sdk_info(sdk_dir)
    project = work / "original"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text(f"""\
[package]
name = "original_handler"
version = "0.1.0"
edition = "2021"

[dependencies]
rust-edge-gateway-sdk = {{ path = "{sdk.compat_dir}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = 3
lto = "fat"
codegen-units = 1

[workspace]
""")
    if sdk.lockfile:
        shutil.copyfile(sdk.lockfile, project / "Cargo.lock")
    env = dict(os.environ, CARGO_TARGET_DIR=str(project / "target"), CARGO_TERM_COLOR="never")

    def cargo_build(revision: int) -> float:
        (project / "src" / "main.rs").write_text(source(revision) + "\nhandler_loop!(handle);\n")
        started = time.perf_counter()
        subprocess.run(["cargo", "build", "--release", "--offline", "--quiet"], cwd=project,
                       env=env, check=True)
        return time.perf_counter() - started

    return cargo_build(1), cargo_build(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="edits to time (median)")
    parser.add_argument("--skip-cold", action="store_true",
                        help="skip the cold and original-approach builds (slow)")
    args = parser.parse_args()
    target = default_target_dir()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="edgebook-bench-") as tmp:
        work = Path(tmp)
        builder = Builder(work / "data", target_dir=target)
        stamp = int(time.time())  # fresh sources each run, so nothing is a cache hit
        print("warming up (first build of this handler)...", file=sys.stderr)
        warm = timed(builder, "orders", source(stamp))
        build(builder, "orders", source(stamp), "release")

        hits = [timed(builder, "orders", source(stamp)) for _ in range(args.runs)]
        rows.append(("cache hit to result (median)", statistics.median(hits), "<= 0.3 s"))
        restarted = Builder(work / "data", target_dir=target)  # a gateway restart
        rows.append(("cache hit after a restart (runs rustc -vV once)",
                     timed(restarted, "orders", source(stamp)), "<= 0.3 s"))

        edits = [timed(builder, "orders", source(stamp + n)) for n in range(1, args.runs + 1)]
        rows.append((f"one-line edit, dev (median of {args.runs})", statistics.median(edits),
                     "<= 1.5 s"))

        releases = [timed(builder, "orders", source(stamp + 100 + n), "release")
                    for n in range(3)]
        rows.append(("release build after an edit (median of 3)", statistics.median(releases),
                     "<= 4 s"))

        fresh = Builder(work / "fresh-data", target_dir=target)
        rows.append(("brand-new handler, fresh data dir (dev)",
                     timed(fresh, "brand-new", source(stamp + 200)), "<= 5 s"))
        rows.append(("brand-new handler, fresh data dir (release)",
                     timed(fresh, "brand-new", source(stamp + 200), "release"), ""))
        rows.append(("first build of the bench handler (warm-up, dev)", warm, ""))

        if not args.skip_cold:
            print("cold build into an empty target dir...", file=sys.stderr)
            cold = Builder(work / "cold-data", target_dir=work / "cold-target")
            rows.append(("truly cold: empty target dir (dev)",
                         timed(cold, "cold", source(stamp + 300)), "once"))
            shutil.rmtree(work / "cold-target", ignore_errors=True)
            print("the original's approach (own target dir, fat LTO, 1 CGU)...",
                  file=sys.stderr)
            first, edit = original_approach(work, find_sdk_dir())
            rows.append(("original: new endpoint (own target dir, fat LTO, cgu=1)", first, ""))
            rows.append(("original: one-line edit (fat LTO, cgu=1)", edit, ""))

        dev_bin = build(builder, "orders", source(stamp + 1)).binary
        rel_bin = build(builder, "orders", source(stamp + 1), "release").binary
        dev_rps, rel_rps = throughput(dev_bin), throughput(rel_bin)

    width = max(len(name) for name, _, _ in rows)
    print(f"{'measurement':<{width}}  {'seconds':>8}  target")
    print(f"{'-' * width}  {'-' * 8}  ------")
    for name, seconds, goal in rows:
        print(f"{name:<{width}}  {seconds:>8.3f}  {goal}")
    print()
    print("worker, 20,000 pipelined requests over one pipe:")
    print(f"  dev:     {dev_rps[0]:>9,.0f} req/s, {dev_rps[1]:6.1f} us worker CPU per request")
    print(f"  release: {rel_rps[0]:>9,.0f} req/s, {rel_rps[1]:6.1f} us worker CPU per request")


if __name__ == "__main__":
    main()
