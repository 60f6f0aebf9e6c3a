"""The runtime file: how clients find a running gateway and its admin token.

``<data_dir>/runtime.json`` (mode 0600, written atomically) holds the data-plane URL, the
admin URL, the admin token, the gateway's pid, its version and when it started. The gateway
writes it once it listens and removes it on a clean shutdown. A file whose pid is dead is
stale: readers ignore it and the next gateway replaces it.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("edgebook.runtime")

RUNTIME_FILE = "runtime.json"


class RuntimeFileError(Exception):
    """The runtime file exists but cannot be used (unreadable, malformed)."""


@dataclasses.dataclass(frozen=True)
class RuntimeInfo:
    """What a running gateway publishes about itself."""

    url: str
    admin_url: str
    token: str
    pid: int
    version: str
    started: float
    data_dir: str = ""
    processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"url", "admin_url", "token", "pid"} - data.keys()
        if missing:
            raise RuntimeFileError(f"runtime file lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names} | {
            "version": str(data.get("version", "")), "started": float(data.get("started", 0))})


def runtime_path(data_dir: str) -> str:
    return os.path.join(data_dir, RUNTIME_FILE)


def write_runtime(data_dir: str, info: RuntimeInfo) -> str:
    """Write the runtime file atomically with mode 0600 and return its path."""
    os.makedirs(data_dir, exist_ok=True)
    path = runtime_path(data_dir)
    fd, tmp = tempfile.mkstemp(prefix=".runtime-", suffix=".tmp", dir=data_dir)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info.to_dict(), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def read_runtime(data_dir: str) -> RuntimeInfo | None:
    """The runtime file's contents, or None when there is no file."""
    path = runtime_path(data_dir)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RuntimeFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RuntimeFileError(f"{path} does not hold a JSON object")
    return RuntimeInfo.from_dict(data)


def remove_runtime(data_dir: str, pid: int | None = None) -> None:
    """Remove the runtime file; with ``pid``, only if that process wrote it."""
    path = runtime_path(data_dir)
    if pid is not None:
        try:
            current = read_runtime(data_dir)
        except RuntimeFileError:
            current = None
        if current is not None and current.pid != pid:
            return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def admin_healthy(info: RuntimeInfo, timeout: float = 2.0) -> bool:
    """True when the admin API named in ``info`` answers its health route."""
    request = urllib.request.Request(info.admin_url.rstrip("/") + "/api/health",
                                      headers={"Authorization": f"Bearer {info.token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def find_live(data_dir: str, *, check_health: bool = True) -> RuntimeInfo | None:
    """The runtime info of a live gateway for ``data_dir``, or None.

    A file whose pid is dead (or whose admin API does not answer, with ``check_health``)
    is stale and ignored; a stale file with a dead pid is removed.
    """
    try:
        info = read_runtime(data_dir)
    except RuntimeFileError as exc:
        log.warning("ignoring unusable runtime file: %s", exc)
        return None
    if info is None:
        return None
    if not pid_alive(info.pid):
        log.info("removing stale runtime file of dead gateway pid %d", info.pid)
        remove_runtime(data_dir, pid=info.pid)
        return None
    if check_health and not admin_healthy(info):
        return None
    return info


def new_info(*, url: str, admin_url: str, token: str, data_dir: str, version: str,
             processes: int = 1) -> RuntimeInfo:
    return RuntimeInfo(url=url, admin_url=admin_url, token=token, pid=os.getpid(),
                       version=version, started=time.time(), data_dir=os.path.abspath(data_dir),
                       processes=processes)
