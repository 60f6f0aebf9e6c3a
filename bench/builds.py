"""Build times: edgebook's build service against the original per-endpoint release+LTO build.

edgebook (``edgebook.build.Builder``, shared cargo target dir, content-hash cache), in a
fresh data dir:
  new handler (dev, release), cache hit, one-line edit (dev, release).
Original style, for comparison: one standalone cargo project per endpoint with its own
target dir, built ``--release`` with fat LTO and one codegen unit; cold (every dependency
compiled for this endpoint alone) and after a one-line edit.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import build_bench  # the build service's benchmark: its handler, and the
                                # original-style per-endpoint build to compare with

_STAMP = int(time.time())


def _edited(n: int) -> str:
    """The benchmark handler, one line different for each ``n``; fresh every run."""
    return build_bench.source((_STAMP % 4_000_000) * 1000 + n)  # fits its u32


def handler_kind() -> str:
    return "bench/build_bench.py's handler (serde derive + json!)"


def edgebook_builds(log, *, quick: bool = False) -> list[dict]:
    from edgebook.build.builder import Builder, BuildRequest

    rows = []
    tmp = tempfile.mkdtemp(prefix="edgebook-bench-build-")
    try:
        builder = Builder(tmp)

        async def timed(label: str, name: str, source: str, profile: str) -> None:
            started = time.monotonic()
            result = await builder.build(BuildRequest(name, source, profile=profile))
            wall = time.monotonic() - started
            rows.append({"build": label, "seconds": wall, "ok": result.ok,
                         "cached": bool(result.cached), "status": result.status})
            log(f"  build {label}: {wall:.2f} s ({result.status}"
                f"{', cached' if result.cached else ''})")

        async def all_builds() -> None:
            first = _edited(0)
            await timed("new handler (dev)", "bench_hello", first, "dev")
            if quick:
                await timed("cache hit (dev)", "bench_hello", first, "dev")
                await timed("one-line edit (dev)", "bench_hello", _edited(1), "dev")
            else:
                await timed("new handler (release)", "bench_hello", first, "release")
                await timed("cache hit (release)", "bench_hello", first, "release")
                await timed("one-line edit (dev)", "bench_hello", _edited(1), "dev")
                await timed("one-line edit (release)", "bench_hello", _edited(2),
                            "release")
            await builder.aclose()

        asyncio.run(all_builds())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def original_builds(log, *, cold: bool = True, timeout: float = 300.0) -> list[dict]:
    """The original's per-endpoint build: its own project and target dir, release + fat LTO."""
    if not cold:
        return []
    from edgebook.build.sdk import find_sdk_dir
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="edgebook-bench-orig-"))
    try:
        first, edit = build_bench.original_approach(tmp, find_sdk_dir())
        for label, seconds in (("original: cold per-endpoint release+LTO", first),
                               ("original: one-line edit release+LTO", edit)):
            rows.append({"build": label, "seconds": seconds, "ok": True, "cached": False,
                         "status": "ok"})
            log(f"  build {label}: {seconds:.2f} s (ok, via bench/build_bench.py)")
    except (subprocess.SubprocessError, OSError) as exc:
        rows.append({"build": "original: cold per-endpoint release+LTO", "seconds": None,
                     "ok": False, "cached": False, "status": f"failed: {exc}"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
