"""The runtime file: how clients find a running gateway and its admin token.

``<data_dir>/runtime.json`` (mode 0600, written atomically) holds the data-plane URL, the
admin URL, the admin token, the gateway's pid, its version and when it started. The gateway
writes it once it listens and removes it on a clean shutdown. A file whose pid is dead is
stale: readers ignore it and the next gateway replaces it.

Beside it, every running gateway of the user leaves a note in ``paths.gateways_dir()``
(``<pid>.json``: data dir, URLs, who started it; no token) so ``edgebook gateways`` can list
them all and a gateway refused a port can name the one holding it. Notes of dead processes
are pruned whenever they are listed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import ipaddress
import signal
import subprocess
import sys
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from . import paths

log = logging.getLogger(__name__)

RUNTIME_FILE = paths.RUNTIME_FILE


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
    return paths.runtime_path(data_dir)


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


def is_loopback_url(url: str) -> bool:
    """True when ``url`` names this machine by a loopback address or ``localhost``."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_admin_url(request: urllib.request.Request, timeout: float):
    """``urlopen`` for the admin API. A loopback URL never goes through ``http_proxy``:
    the request carries the bearer token, and a proxy has no business seeing it (nor can
    it reach this machine's loopback)."""
    if is_loopback_url(request.full_url):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return opener.open(request, timeout=timeout)
    return urllib.request.urlopen(request, timeout=timeout)


def admin_healthy(info: RuntimeInfo, timeout: float = 2.0) -> bool:
    """True when the admin API named in ``info`` answers its health route."""
    request = urllib.request.Request(info.admin_url.rstrip("/") + "/api/health",
                                      headers={"Authorization": f"Bearer {info.token}"})
    try:
        with open_admin_url(request, timeout) as response:
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


def url_host(host: str) -> str:
    """``host`` as it goes in a URL that reaches a listener bound to it: a wildcard bind
    is reached over loopback (IPv4 ``0.0.0.0`` or empty -> ``127.0.0.1``, IPv6 ``::`` ->
    ``[::1]``); IPv6 literals get their brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


# -- finding or starting a gateway ------------------------------------------------------------

class StartError(RuntimeError):
    """A gateway could not be started; the message names its log."""


class Started(Protocol):
    """A gateway process being started: its pid, whether it still runs, how to end it."""

    pid: int

    def alive(self) -> bool: ...

    def kill(self) -> None: ...


@contextlib.contextmanager
def start_lock(data_dir: str) -> Iterator[None]:
    """The data dir's start lock: whoever holds it may start its gateway (kernels, the CLI
    and the Jupyter server extension all take it), so at most one is started."""
    os.makedirs(os.path.join(data_dir, "logs"), exist_ok=True)
    with open(os.path.join(data_dir, ".start.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def gateway_log(data_dir: str) -> str:
    return os.path.join(data_dir, "logs", "gateway.log")


#: Seconds a gateway started for a process (``serve --owner-pid``) stays once that process
#: has ended and nothing reaches it (``EDGEBOOK_OWNERLESS_IDLE`` overrides).
OWNERLESS_IDLE = 30.0


def ownerless_idle() -> float:
    try:
        seconds = float(os.environ.get("EDGEBOOK_OWNERLESS_IDLE", "") or OWNERLESS_IDLE)
    except ValueError:
        return OWNERLESS_IDLE
    return seconds if seconds > 0 else OWNERLESS_IDLE


def find_or_start(data_dir: str, spawn: Callable[[list[str], str], Started], *,
                  timeout: float = 60.0, serve_args: Sequence[str] = (),
                  started_by: str = "", idle_exit: float | None = None,
                  owner_pid: int | None = None) -> tuple[RuntimeInfo, Started | None]:
    """The data dir's live gateway, or one started with ``spawn(argv, log_path)`` under the
    start lock and waited for until its runtime file is up (``None``: it was running).

    A gateway started here serves a notebook or a background deploy: it runs in
    development mode (``serve --dev``). ``started_by`` is what ``edgebook gateways`` shows
    as its starter; with ``idle_exit`` it exits after that many seconds without data-plane
    traffic or admin calls (a kernel's gateway must not outlive the kernel for ever); with
    ``owner_pid`` (the starting kernel) it also exits soon after that process has ended."""
    data_dir = os.path.abspath(data_dir)
    with start_lock(data_dir):
        info = find_live(data_dir)
        if info is not None:
            return info, None
        log_path = gateway_log(data_dir)
        argv = [sys.executable, "-m", "edgebook", "serve", "--data-dir", data_dir,
                "--port", "0", "--dev",
                *(["--started-by", started_by] if started_by else []),
                *(["--idle-exit", f"{idle_exit:g}"] if idle_exit else []),
                *(["--owner-pid", str(owner_pid)] if owner_pid else []), *serve_args]
        started = spawn(argv, log_path)
        log.info("started a gateway (pid %d) for %s", started.pid, data_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not started.alive():
                raise StartError(f"the gateway exited before it served; see {log_path}:\n"
                                 f"{_tail(log_path)}")
            info = find_live(data_dir)
            if info is not None and info.pid == started.pid:
                return info, started
            time.sleep(0.05)
        started.kill()
        raise StartError(f"the gateway did not come up within {timeout:.0f} s; "
                         f"see {log_path}:\n{_tail(log_path)}")


class DetachedGateway:
    """A gateway started as a daemon: through a short-lived parent, so it is adopted by init
    (no zombie in a kernel that outlives it) and outlives its starter."""

    _DETACH = ("import subprocess, sys\n"
               "with open(sys.argv[1], 'ab') as out:\n"
               "    child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL,\n"
               "                             stdout=out, stderr=out, start_new_session=True,\n"
               "                             close_fds=True)\n"
               "print(child.pid, flush=True)\n"
               "child.returncode = 0  # detached on purpose: nobody here waits for it\n")

    def __init__(self, argv: Sequence[str], log_path: str):
        done = subprocess.run([sys.executable, "-c", self._DETACH, log_path, *argv],
                              capture_output=True, text=True, timeout=30, check=False)
        try:
            self.pid = int(done.stdout.strip())
        except ValueError:
            raise StartError(f"could not start a background gateway: {done.stderr.strip()}") \
                from None

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


# -- every gateway of this user -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GatewayNote:
    """One running gateway as ``edgebook gateways`` lists it (no secrets)."""

    pid: int
    data_dir: str
    url: str
    admin_url: str
    started_by: str
    started: float
    processes: int = 1
    idle_exit: float = 0.0

    @property
    def port(self) -> int:
        return _port_of(self.url)


def _port_of(url: str) -> int:
    try:
        return int(url.rsplit(":", 1)[1].split("/", 1)[0])
    except (IndexError, ValueError):
        return 0


def _note_path(pid: int) -> str:
    return os.path.join(paths.gateways_dir(), f"{pid}.json")


def register_gateway(note: GatewayNote) -> None:
    """Leave ``note`` for ``list_gateways`` (atomically, in a directory only the user reads)."""
    directory = str(paths.gateways_dir())
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".note-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dataclasses.asdict(note), handle)
        os.replace(tmp, _note_path(note.pid))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def unregister_gateway(pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_note_path(pid))


def list_gateways() -> list[GatewayNote]:
    """Every running gateway of this user, oldest first; notes of dead ones are removed."""
    directory = str(paths.gateways_dir())
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    notes = []
    names_of = {f.name for f in dataclasses.fields(GatewayNote)}
    for name in names:
        if not name.endswith(".json"):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            note = GatewayNote(**{k: v for k, v in data.items() if k in names_of})
        except (OSError, ValueError, TypeError):
            continue
        if not _is_gateway(note.pid):
            log.info("pruning the note of dead gateway pid %d", note.pid)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        notes.append(note)
    return sorted(notes, key=lambda n: n.started)


def _is_gateway(pid: int) -> bool:
    """``pid`` is alive and still an edgebook process (not a recycled pid)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"edgebook" in handle.read()
    except OSError:
        return True


def gateway_on_port(port: int) -> GatewayNote | None:
    """The running gateway whose data plane listens on ``port``, if it is one of ours."""
    for note in list_gateways():
        if port and note.port == port:
            return note
    return None


# -- a gateway that is still starting ---------------------------------------------------------

def mark_starting(data_dir: str) -> None:
    """``edgebook serve`` is starting for ``data_dir`` (until ``starting_done``)."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    with open(paths.starting_path(data_dir), "w") as handle:
        handle.write(str(os.getpid()))


def starting_done(data_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(paths.starting_path(data_dir))


def wait_while_starting(data_dir: str, timeout: float = 60.0) -> RuntimeInfo | None:
    """The live gateway of ``data_dir``, waiting while a ``serve`` for it is still starting
    (its runtime file comes once the data plane and the admin API listen, and with
    ``--processes N`` once every process serves); None if none is starting."""
    deadline = time.monotonic() + timeout
    while True:
        info = find_live(data_dir)
        if info is not None:
            return info
        try:
            with open(paths.starting_path(data_dir)) as handle:
                pid = int(handle.read().strip() or 0)
        except (OSError, ValueError):
            return None
        if not pid or not pid_alive(pid) or time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
