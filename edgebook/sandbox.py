"""Worker and build isolation without containers: limits, a less privileged user, a launcher.

A ``Sandbox`` turns a command line into one that starts through ``edgebook-launch``, a
small C program (``launcher.c``, compiled once per machine with ``cc``, which cargo needs
for linking anyway). Between fork and the real program the launcher opens the program,
closes every descriptor above 2, applies the resource limits, drops to the sandbox user
when the gateway runs as root, sets ``no_new_privs`` and asks for SIGKILL when the gateway
dies (``PR_SET_PDEATHSIG``). Doing this in a separate program, not a ``preexec_fn``, keeps
it safe in a threaded gateway and costs about one extra ``exec``.

Builds also get a file-system view of their own (a private mount namespace, made by the
launcher): the data dir's files other than the cargo workspace are covered, so a build
script cannot read the runtime file with the admin token or the registry, and every
persistent file system is read-only except the workspace (where its TMPDIR is), the shared
target dir and the cargo cache. Where no mount namespace can be made (no privilege and no user
namespaces), builds run without it and the gateway logs that once.

What it does not give: workers have no file-system view of their own (a worker can read
whatever the sandbox user can read: world-readable files, other workers' binaries), no
network policy, and the workers of every endpoint share one user, so they could signal each
other.
The parent-death signal follows the thread that spawned the worker: the gateway spawns
workers from its event loop thread, which lives as long as the gateway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pwd
import subprocess
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("edgebook.sandbox")

MiB = 1024 * 1024
GiB = 1024 * MiB
LAUNCHER_SOURCE = Path(__file__).with_name("launcher.c")
DEFAULT_USER = "nobody"


class SandboxError(RuntimeError):
    """The launcher cannot be built or the sandbox user does not exist."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one process (``None`` leaves the gateway's own limit).

    Defaults suit a long-lived worker: CPU time is not limited, because a healthy worker
    accumulates it over days; the request timeout ends a spinning handler instead.
    ``processes`` counts every process and thread of the sandbox user, so it is enforced
    only when the gateway runs as root and drops to that user (root ignores it).
    """

    address_space: int | None = 1 * GiB
    cpu_seconds: int | None = None
    open_files: int | None = 256
    processes: int | None = 64
    file_size: int | None = 64 * MiB
    core_size: int | None = 0

    #: option name (as the admin API takes it) -> field name
    OPTIONS = {"limit_address_space": "address_space", "limit_cpu_seconds": "cpu_seconds",
               "limit_open_files": "open_files", "limit_processes": "processes",
               "limit_file_size": "file_size"}

    @classmethod
    def from_options(cls, options: dict[str, Any], base: "Limits | None" = None) -> "Limits":
        """Limits from endpoint options (``limit_open_files`` ...); raises ValueError."""
        base = base or cls()
        changes = {}
        for option, name in cls.OPTIONS.items():
            if option not in options:
                continue
            value = options[option]
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise ValueError(f"{option} must be a positive integer or null")
            changes[name] = value
        return dataclasses.replace(base, **changes)

    def launcher_args(self) -> list[str]:
        pairs = (("AS", self.address_space), ("CPU", self.cpu_seconds),
                 ("NOFILE", self.open_files), ("NPROC", self.processes),
                 ("FSIZE", self.file_size), ("CORE", self.core_size))
        args = []
        for name, value in pairs:
            if value is not None:
                args += ["--rlimit", f"{name}={int(value)}"]
        return args


#: What builds get: rustc needs far more memory and files than a worker.
BUILD_LIMITS = Limits(address_space=None, open_files=4096, processes=None,
                      file_size=2 * GiB)


@dataclasses.dataclass(frozen=True)
class SandboxUser:
    uid: int
    gid: int
    name: str = ""

    @classmethod
    def named(cls, name: str) -> "SandboxUser":
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise SandboxError(f"sandbox user {name!r} does not exist") from None
        if entry.pw_uid == 0:
            raise SandboxError(f"sandbox user {name!r} is root")
        return cls(entry.pw_uid, entry.pw_gid, name)


def default_user() -> SandboxUser | None:
    """The user workers run as: ``EDGEBOOK_WORKER_USER`` (default ``nobody``) when the
    gateway runs as root, else none (workers keep the gateway's user)."""
    if os.geteuid() != 0:
        return None
    return SandboxUser.named(os.environ.get("EDGEBOOK_WORKER_USER") or DEFAULT_USER)


class Sandbox:
    """How child processes start: the launcher, the user to drop to, the parent's pid.

    ``user=None`` keeps the caller's user. ``cache_dir`` is where the compiled launcher
    lives (default: beside the shared cargo target dir).
    """

    def __init__(self, user: SandboxUser | None = None, *, cache_dir: str | os.PathLike | None = None,
                 cc: str | None = None):
        self.user = user
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._cc = cc or os.environ.get("CC") or "cc"
        self._launcher: str | None = None
        self._can_confine: bool | None = None
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> "Sandbox":
        return cls(default_user())

    def launcher(self) -> str:
        """The launcher's path, compiling it on first use (blocking: call off the loop)."""
        if self._launcher is None:
            with self._lock:
                if self._launcher is None:
                    self._launcher = self._build_launcher()
        return self._launcher

    def wrap(self, argv: list[str], limits: Limits | None, *, chdir: str | None = None,
             hide: list[str] = (), writable: list[str] = ()) -> list[str]:
        """``argv`` started through the launcher with ``limits`` and this sandbox's user;
        with ``hide``/``writable``, in a file-system view where those paths are covered and
        everything persistent but ``writable`` is read-only (when this machine allows it)."""
        command = [self.launcher()]
        command += (limits or Limits()).launcher_args()
        if (hide or writable) and self.can_confine():
            for path in hide:
                command += ["--hide", os.path.abspath(path)]
            for path in writable:
                command += ["--writable", os.path.abspath(path)]
        if self.user is not None:
            command += ["--user", f"{self.user.uid}:{self.user.gid}"]
        command += ["--parent", str(os.getpid())]
        if chdir:
            command += ["--chdir", chdir]
        return command + ["--", *argv]

    def can_confine(self) -> bool:
        """Whether the launcher can make a private mount namespace here (tried once)."""
        if self._can_confine is None:
            probe = [self.launcher(), "--writable", os.path.abspath(os.sep + "tmp"), "--",
                     "/bin/sh", "-c", "exit 0"]
            try:
                done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
                self._can_confine = done.returncode == 0
                reason = done.stderr.strip()
            except (OSError, subprocess.TimeoutExpired) as exc:
                self._can_confine, reason = False, str(exc)
            if not self._can_confine:
                log.warning("builds run without a private file-system view: %s", reason)
        return self._can_confine

    def give(self, path: str | os.PathLike) -> None:
        """Hand a directory the sandboxed processes should write (a worker's HOME) to the
        sandbox user."""
        if self.user is not None:
            os.chown(path, self.user.uid, self.user.gid)

    # -- the launcher binary ---------------------------------------------------------

    def _build_launcher(self) -> str:
        source = LAUNCHER_SOURCE.read_bytes()
        digest = hashlib.sha256(source).hexdigest()[:16]
        cache = self._cache_dir or _default_cache_dir()
        path = cache / f"edgebook-launch-{digest}"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".edgebook-launch-{digest}.{os.getpid()}.{threading.get_ident()}"
        command = [self._cc, "-O2", "-Wall", "-o", str(tmp), str(LAUNCHER_SOURCE)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                  env={"PATH": os.environ.get("PATH", os.defpath),
                                       "LANG": "C"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"cannot compile the worker launcher with {self._cc!r}: {exc}"
                               ) from None
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise SandboxError(f"compiling the worker launcher failed:\n{done.stderr}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        log.info("built the worker launcher at %s", path)
        return str(path)


def _default_cache_dir() -> Path:
    from .build import default_target_dir  # the launcher lives beside the shared target dir
    return default_target_dir().parent / "launcher"


# -- environments ------------------------------------------------------------------------

#: Variables a cargo build may see (these names, and cargo's and rustup's own prefixes);
#: everything else (Jupyter's tokens, cloud credentials, the gateway's settings) is
#: dropped, and so is any name that looks like a credential, e.g. CARGO_REGISTRY_TOKEN.
_BUILD_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ", "HTTP_PROXY", "HTTPS_PROXY",
    "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "CC", "CXX", "AR"})
_BUILD_ENV_PREFIXES = ("CARGO_", "RUSTUP_", "RUSTC", "RUSTFLAGS", "RUSTDOC")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "KEY")


def build_env(source: dict[str, str] | None = None) -> dict[str, str]:
    """The environment cargo runs with: the allow-list above, minus anything secret."""
    source = os.environ if source is None else source
    return {name: value for name, value in source.items()
            if (name in _BUILD_ENV_NAMES or name.startswith(_BUILD_ENV_PREFIXES))
            and not any(word in name.upper() for word in _SECRET_WORDS)}


def build_user() -> SandboxUser | None:
    """The user cargo runs as: ``EDGEBOOK_BUILD_USER`` when set (and the gateway is root),
    else the gateway's own user, who owns the toolchain and the shared target dir. A build
    user needs the toolchain, ``CARGO_HOME`` and the target dir; it should not be the
    workers' user, or a worker could plant files in the target dir."""
    name = os.environ.get("EDGEBOOK_BUILD_USER")
    if not name or os.geteuid() != 0:
        return None
    return SandboxUser.named(name)
