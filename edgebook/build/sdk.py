"""The SDK crate handlers build against: where its sources are, its version, and a
content hash of its sources (part of every binary's cache key)."""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .. import paths

SDK_PACKAGE = "edgebook-sdk"
COMPAT_PACKAGE = "rust-edge-gateway-sdk"


def find_sdk_dir() -> Path:
    """The SDK's source: ``EDGEBOOK_SDK_DIR``, the wheel's ``edgebook/_sdk``, or ``sdk/``."""
    here = Path(__file__).resolve().parents[1]  # the edgebook package
    env = paths.env_sdk_dir()
    candidates = ([env] if env else []) + [here / "_sdk", here.parent / "sdk"]
    for candidate in candidates:
        if (candidate / "Cargo.toml").is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        "the edgebook SDK sources were not found (looked in "
        + ", ".join(str(c) for c in candidates) + "); set EDGEBOOK_SDK_DIR")


@dataclass(frozen=True)
class SdkInfo:
    """The SDK crate a workspace builds against."""

    dir: Path
    version: str
    compat_dir: Path
    lockfile: Path | None


def sdk_info(sdk_dir: Path) -> SdkInfo:
    manifest = tomllib.loads((sdk_dir / "Cargo.toml").read_text())
    version = manifest.get("package", {}).get("version", "0.0.0")
    compat = sdk_dir / "compat"
    if not (compat / "Cargo.toml").is_file():
        raise FileNotFoundError(f"the SDK at {sdk_dir} has no compat crate (compat/Cargo.toml)")
    lock = sdk_dir / "Cargo.lock"
    return SdkInfo(dir=sdk_dir, version=version, compat_dir=compat,
                   lockfile=lock if lock.is_file() else None)


class SdkFingerprint:
    """A content hash of the SDK sources, recomputed only when a file's size or mtime moves."""

    def __init__(self, sdk_dir: Path):
        self._dir = sdk_dir
        self._stamp: tuple | None = None
        self._hash = ""

    def _files(self) -> list[Path]:
        files = []
        for root, dirs, names in os.walk(self._dir):
            dirs[:] = sorted(d for d in dirs if d not in ("target", ".git") and
                             not d.startswith("."))
            for name in sorted(names):
                if name.endswith((".rs", ".toml", ".lock")):
                    files.append(Path(root) / name)
        return files

    def value(self) -> str:
        files = self._files()
        stamp = tuple((str(p), st.st_size, st.st_mtime_ns)
                      for p in files for st in [p.stat()])
        if stamp != self._stamp:
            digest = hashlib.sha256()
            for path in files:
                digest.update(str(path.relative_to(self._dir)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
            self._hash, self._stamp = digest.hexdigest(), stamp
        return self._hash
