"""Where edgebook keeps things: every ``EDGEBOOK_*`` path setting is read here.

A project's data dir (``.edgebook`` beside the notebooks unless ``EDGEBOOK_DATA_DIR`` or
``--data-dir`` says otherwise) holds ``registry.sqlite3``, ``workspace/`` (the cargo
workspace), ``bin/<content-hash>`` (built binaries), ``logs/`` and ``runtime.json`` (how to
reach the running gateway; 0600). The cargo target dir is shared by every data dir of the
user (``EDGEBOOK_TARGET_DIR``, default ``~/.cache/edgebook/target``), so the SDK's
dependencies are compiled once per machine; the sandbox launcher is built beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_NAME = ".edgebook"
RUNTIME_FILE = "runtime.json"
REGISTRY_FILE = "registry.sqlite3"


def env_data_dir() -> str | None:
    """``EDGEBOOK_DATA_DIR`` as an absolute path, if set."""
    value = os.environ.get("EDGEBOOK_DATA_DIR")
    return os.path.abspath(os.path.expanduser(value)) if value else None


def default_data_dir(root: str | None = None) -> str:
    """``EDGEBOOK_DATA_DIR``, else ``.edgebook`` in ``root`` (default: the working dir)."""
    return env_data_dir() or os.path.join(os.path.abspath(root or os.getcwd()), DATA_DIR_NAME)


def runtime_path(data_dir: str) -> str:
    return os.path.join(data_dir, RUNTIME_FILE)


def starting_path(data_dir: str) -> str:
    """Where ``edgebook serve`` notes its pid while it starts (before the runtime file)."""
    return os.path.join(data_dir, "starting.pid")


def registry_path(data_dir: str) -> str:
    return os.path.join(data_dir, REGISTRY_FILE)


def target_dir() -> Path:
    """``EDGEBOOK_TARGET_DIR``, else ``~/.cache/edgebook/target`` (honouring XDG_CACHE_HOME)."""
    env = os.environ.get("EDGEBOOK_TARGET_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "edgebook" / "target"


def launcher_dir() -> Path:
    """Where the sandbox launcher is compiled: beside the shared target dir."""
    return target_dir().parent / "launcher"


def env_sdk_dir() -> Path | None:
    """``EDGEBOOK_SDK_DIR`` (the SDK sources to build against), if set."""
    value = os.environ.get("EDGEBOOK_SDK_DIR")
    return Path(value) if value else None


def gateways_dir() -> Path:
    """Where every running gateway of this user leaves a note (``<pid>.json``) for
    ``edgebook gateways``: ``EDGEBOOK_GATEWAYS_DIR``, else ``$XDG_RUNTIME_DIR/edgebook/gateways``,
    else ``~/.cache/edgebook/gateways`` (honouring XDG_CACHE_HOME)."""
    env = os.environ.get("EDGEBOOK_GATEWAYS_DIR")
    if env:
        return Path(env).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "edgebook" / "gateways"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "edgebook" / "gateways"
