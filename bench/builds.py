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
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLER = (Path(__file__).resolve().parent / "handlers" / "hello.rs").read_text()

try:  # the build service's own benchmark: reuse its handler and its original-style build
    from bench import build_bench as _build_bench
except Exception:  # noqa: BLE001 - fall back to the hello handler and our own copy
    _build_bench = None

_STAMP = int(time.time())


def _edited(source: str | None, n: int) -> str:
    """The benchmark handler, one line different for each ``n``; fresh every run."""
    if _build_bench is not None:
        return _build_bench.source((_STAMP % 4_000_000) * 1000 + n)  # fits its u32
    return HANDLER.replace("Hello, World!", f"Hello, World! (edit {_STAMP}-{n})")


def handler_kind() -> str:
    return ("bench/build_bench.py's handler (serde derive + json!)" if _build_bench is not None
            else "bench/handlers/hello.rs")


def edgebook_builds(log, *, quick: bool = False) -> list[dict]:
    from edgebook.build import Builder, BuildRequest

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
            first = _edited(None, 0)
            await timed("new handler (dev)", "bench_hello", first, "dev")
            if quick:
                await timed("cache hit (dev)", "bench_hello", first, "dev")
                await timed("one-line edit (dev)", "bench_hello", _edited(HANDLER, 1), "dev")
            else:
                await timed("new handler (release)", "bench_hello", first, "release")
                await timed("cache hit (release)", "bench_hello", first, "release")
                await timed("one-line edit (dev)", "bench_hello", _edited(HANDLER, 1), "dev")
                await timed("one-line edit (release)", "bench_hello", _edited(HANDLER, 2),
                            "release")
            await builder.aclose()

        asyncio.run(all_builds())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


ORIGINAL_MANIFEST = """\
[package]
name = "endpoint"
version = "0.1.0"
edition = "2021"

[dependencies]
rust-edge-gateway-sdk = {{ path = "{compat}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = 3
lto = "fat"
codegen-units = 1

[workspace]
"""


def original_builds(log, *, cold: bool = True, timeout: float = 300.0) -> list[dict]:
    """The original's per-endpoint build: its own project and target dir, release + fat LTO."""
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="edgebook-bench-orig-"))
    if _build_bench is not None and cold:
        from edgebook.workspace import find_sdk_dir
        try:
            first, edit = _build_bench.original_approach(tmp, find_sdk_dir())
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
    try:
        sdk = tmp / "sdk"  # a copy, so the SDK's own target dir and lock are not touched
        shutil.copytree(ROOT / "sdk", sdk, ignore=shutil.ignore_patterns("target"))
        project = tmp / "endpoint"
        (project / "src").mkdir(parents=True)
        (project / "Cargo.toml").write_text(ORIGINAL_MANIFEST.format(compat=sdk / "compat"))
        if (sdk / "Cargo.lock").exists():
            shutil.copy(sdk / "Cargo.lock", project / "Cargo.lock")
        source = HANDLER.replace("use edgebook_sdk::prelude::*;",
                                 "use rust_edge_gateway_sdk::prelude::*;")
        env = dict(os.environ, CARGO_TARGET_DIR=str(project / "target"))

        def cargo(label: str, text: str) -> None:
            (project / "src" / "main.rs").write_text(text)
            started = time.monotonic()
            proc = subprocess.run(["cargo", "build", "--release", "--offline", "--quiet"],
                                  cwd=project, env=env, capture_output=True, text=True,
                                  timeout=timeout)
            wall = time.monotonic() - started
            rows.append({"build": label, "seconds": wall, "ok": proc.returncode == 0,
                         "cached": False, "status": "ok" if proc.returncode == 0 else
                         proc.stderr[-300:]})
            log(f"  build {label}: {wall:.2f} s ({'ok' if proc.returncode == 0 else 'FAILED'})")

        if cold:
            cargo("original: cold per-endpoint release+LTO", source)
            cargo("original: one-line edit release+LTO", _edited(source, 1))
    except subprocess.TimeoutExpired:
        rows.append({"build": "original: cold per-endpoint release+LTO", "seconds": None,
                     "ok": False, "cached": False, "status": "timeout"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
