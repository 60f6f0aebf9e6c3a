"""Worker and build isolation without containers: limits, a user of their own, a view of
their own, all set up by a small launcher.

A ``Sandbox`` turns a command line into one that starts through ``edgebook-launch``, a
small C program (``launcher.c``, compiled once per machine with ``cc``, which cargo needs
for linking anyway). Between fork and the real program the launcher opens the program,
closes every descriptor above 2, applies the resource limits, changes user, drops every
capability, sets ``no_new_privs`` and asks for SIGKILL when the gateway dies. Doing this in
a separate program, not a ``preexec_fn``, keeps it safe in a threaded gateway and costs
about one extra ``exec``.

Users: as root, each endpoint's workers get a uid of their own (``EndpointUsers``), builds
run as root without capabilities (or ``EDGEBOOK_BUILD_USER``); otherwise both keep the
gateway's user.

Views (Linux, where namespaces can be made): builds and workers see the file system
through a private mount namespace (inside a user namespace when not root) where the data
dir's secrets are covered and every file system is read-only except what they must write:
for builds the workspace (their TMPDIR), the shared target dir and cargo's download caches;
for workers ``/tmp`` and a private HOME. Builds, and workers that share the gateway's
user, also get a PID namespace with their own ``/proc``. Where no view can be made, they
run without one; ``isolation_report`` (``/api/health``, the ``serve`` banner) says so.

docs/architecture.md ("Isolation") says what this does and does not give, as root and as
a normal user. The parent-death signal follows the thread that spawned the process: the
gateway spawns workers from its event loop thread, which lives as long as the gateway.
"""

from __future__ import annotations

import dataclasses
import grp
import hashlib
import logging
import os
import pwd
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from . import paths

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB
LAUNCHER_SOURCE = Path(__file__).with_name("launcher.c")


class SandboxError(RuntimeError):
    """The launcher cannot be built or the sandbox user does not exist."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one process (``None`` leaves the gateway's own limit).

    Defaults suit a long-lived worker: CPU time is not limited, because a healthy worker
    accumulates it over days; the request timeout ends a spinning handler instead.
    ``processes`` counts every process and thread of the worker's user: as root that is
    the endpoint's own uid, so each endpoint has its own budget; as a normal user it
    counts every process of that user.
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
    """The one user every worker runs as, when the gateway runs as root and
    ``EDGEBOOK_WORKER_USER`` names one; else none (as root, each endpoint then gets a uid
    of its own, see ``EndpointUsers``; otherwise workers keep the gateway's user)."""
    name = os.environ.get("EDGEBOOK_WORKER_USER")
    if os.geteuid() != 0 or not name:
        return None
    return SandboxUser.named(name)


#: The temp dir every process shares, writable in a worker's view.
_SHARED_TMP = "/tmp"

#: Where the daemons that trust any root peer keep their sockets (systemd, D-Bus, Docker,
#: containerd; /var/run is a link to /run on current systems).
_ROOT_SOCKET_DIRS = ("/run", "/var/run", "/tmp/.X11-unix")

#: The uids endpoints' workers get when the gateway is root: systemd's DynamicUser range,
#: which no distribution hands out to accounts (``EDGEBOOK_WORKER_UIDS`` changes it).
DEFAULT_WORKER_UIDS = "61184-65519"


def _uid_taken(uid: int) -> bool:
    """Whether an account or a group already owns ``uid`` (then files may belong to it)."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


class EndpointUsers:
    """One uid (and a group of the same number) per endpoint, from ``first..last``, as
    systemd's DynamicUser hands them out: the workers of two endpoints cannot signal each
    other, and ``processes`` becomes each endpoint's own budget.

    An endpoint's uid follows from its name (a hash into the range), so it stays the same
    across gateway restarts; a uid already held by another endpoint of this gateway, or by
    an account or group of the system, moves the endpoint to the next free one. Nothing is
    written to the system's user database: the uids own only the workers' processes, their
    private HOME, and what they leave in /tmp.
    """

    def __init__(self, first: int, last: int, taken=_uid_taken):
        if not 0 < first <= last < 2**31 - 1:
            raise SandboxError(f"bad worker uid range {first}-{last}")
        self.first, self.last = first, last
        self._taken = taken
        self._uids: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str) -> "EndpointUsers":
        """From ``"FIRST-LAST"`` (e.g. ``61184-65519``)."""
        try:
            first, last = (int(part) for part in text.split("-"))
        except ValueError:
            raise SandboxError(f"bad worker uid range {text!r} (want FIRST-LAST)") from None
        return cls(first, last)

    def user_for(self, endpoint: str) -> SandboxUser:
        with self._lock:
            uid = self._uids.get(endpoint)
            if uid is None:
                uid = self._pick(endpoint)
                self._uids[endpoint] = uid
        return SandboxUser(uid, uid, f"edgebook endpoint {endpoint}")

    def _pick(self, endpoint: str) -> int:
        size = self.last - self.first + 1
        digest = hashlib.sha256(endpoint.encode()).digest()
        start = int.from_bytes(digest[:8], "big") % size
        held = set(self._uids.values())
        for step in range(size):
            uid = self.first + (start + step) % size
            if uid not in held and not self._taken(uid):
                return uid
        raise SandboxError(f"no free uid left in {self.first}-{self.last} for endpoint "
                           f"{endpoint!r}")


class Sandbox:
    """How child processes start: the launcher, the user to drop to, the parent's pid.

    ``user=None`` keeps the caller's user. ``cache_dir`` is where the compiled launcher
    lives (default: beside the shared cargo target dir).
    """

    def __init__(self, user: SandboxUser | None = None, *, cache_dir: str | os.PathLike | None = None,
                 cc: str | None = None, portable: bool | None = None,
                 endpoint_users: EndpointUsers | None = None):
        self.user = user
        #: a uid per endpoint for workers, where ``user`` is None
        self.endpoint_users = endpoint_users
        #: only what every POSIX system has (what macOS gets); ``EDGEBOOK_LAUNCHER_PORTABLE=1``
        #: selects it on Linux, to test that path
        self.portable = (sys.platform != "linux" or _env_flag("EDGEBOOK_LAUNCHER_PORTABLE")
                         if portable is None else portable)
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._cc = cc or os.environ.get("CC") or "cc"
        self._launcher: str | None = None
        self._can_confine: bool | None = None
        self._can_own_pids: bool | None = None
        self._confine_failure = ""
        self._worker_hidden: list[str] = []
        #: refuse to start what asks for a view where none can be made
        self.require_view = _env_flag("EDGEBOOK_REQUIRE_ISOLATION")
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> "Sandbox":
        """As root: a uid per endpoint (``EDGEBOOK_WORKER_UIDS``, default 61184-65519),
        or the one ``EDGEBOOK_WORKER_USER``; else the gateway's own user."""
        user = default_user()
        if user is None and os.geteuid() == 0:
            uids = os.environ.get("EDGEBOOK_WORKER_UIDS") or DEFAULT_WORKER_UIDS
            return cls(endpoint_users=EndpointUsers.parse(uids))
        return cls(user)

    def user_for(self, endpoint: str) -> SandboxUser | None:
        """The user ``endpoint``'s workers run as (None: the gateway's own)."""
        if self.user is None and self.endpoint_users is not None:
            return self.endpoint_users.user_for(endpoint)
        return self.user

    def hide_from_workers(self, *paths: str | os.PathLike) -> None:
        """Cover ``paths`` (the data dir: the admin token, the registry, the services'
        files) in every worker's view."""
        self._worker_hidden += [os.path.abspath(path) for path in paths]

    def wrap_worker(self, argv: list[str], limits: Limits | None, *, endpoint: str,
                    home: str | None = None) -> list[str]:
        """How one of ``endpoint``'s workers starts: as the endpoint's user, with
        ``limits``, in a view of its own where it can be made: the paths given to
        ``hide_from_workers`` covered, a private empty ``home``, everything read-only but
        ``/tmp`` (shared, as before, so programs and files placed there keep working).

        A worker of a gateway that is not root runs as the gateway's own user and also
        gets a PID namespace: it could otherwise signal the gateway and Jupyter. A worker
        with a uid of its own keeps seeing real process ids (its ready frame reports its
        pid), which is all it can do with them. (A root gateway's sandbox with no user at
        all, as some tests make, runs workers as root without capabilities, outside one.)"""
        user = self.user_for(endpoint)
        return self.wrap(argv, limits, chdir=home or "/", user=user,
                         hide=self._worker_hidden, writable=[_SHARED_TMP],
                         tmpfs=[home] if home else [], own_pids=self._shares_gateway_user())

    def _shares_gateway_user(self) -> bool:
        """Whether workers run as the (unprivileged) gateway's own user."""
        return self.user is None and self.endpoint_users is None and os.geteuid() != 0

    def launcher(self) -> str:
        """The launcher's path, compiling it on first use (blocking: call off the loop)."""
        if self._launcher is None:
            with self._lock:
                if self._launcher is None:
                    self._launcher = self._build_launcher()
        return self._launcher

    def wrap(self, argv: list[str], limits: Limits | None, *, chdir: str | None = None,
             hide: list[str] = (), writable: list[str] = (), tmpfs: list[str] = (),
             own_pids: bool = True, user: SandboxUser | None = None) -> list[str]:
        """``argv`` started through the launcher with ``limits`` and ``user`` (default:
        this sandbox's user), without capabilities; with ``hide``/``writable``/``tmpfs``,
        in a view of its own (when this machine allows one, see ``can_confine``): those
        paths covered, a fresh empty tmpfs on each ``tmpfs`` path, everything else
        read-only but ``writable``, and with ``own_pids`` its own PID namespace and
        ``/proc``. A view that runs as root (without capabilities) also has the sockets of
        the daemons that trust any root peer covered (``_ROOT_SOCKET_DIRS``)."""
        user = user or self.user
        command = [self.launcher()]
        command += (limits or Limits()).launcher_args()
        if hide or writable or tmpfs:
            if self.can_confine():
                for option, paths in (("--hide", hide), ("--writable", writable),
                                      ("--tmpfs", tmpfs)):
                    for path in paths:
                        command += [option, os.path.abspath(path)]
                if own_pids and self.can_own_pids():
                    command.append("--pid-namespace")
                if user is None and os.geteuid() == 0:
                    # root without capabilities: the daemons behind these still trust it
                    for path in dict.fromkeys(map(os.path.realpath, _ROOT_SOCKET_DIRS)):
                        command += ["--hide-sockets", path]
            elif self.require_view:
                raise SandboxError("no private file-system view can be made here and "
                                   "EDGEBOOK_REQUIRE_ISOLATION is set: "
                                   f"{self._confine_failure}")
        if user is not None:
            command += ["--user", f"{user.uid}:{user.gid}"]
        command += ["--parent", str(os.getpid())]
        if chdir:
            command += ["--chdir", chdir]
        return command + ["--", *argv]

    def can_confine(self) -> bool:
        """Whether the launcher can make a view of its own here: a mount namespace, and
        (see ``can_own_pids``) a PID namespace with its own /proc (tried once). Where it
        cannot (a container's default profile, macOS), processes asked to run in a view
        run without one, unless ``EDGEBOOK_REQUIRE_ISOLATION`` is set; ``isolation()``
        says so, and the gateway logs it once."""
        if self._can_confine is None:
            self._can_own_pids, pids_failure = self._probe("--pid-namespace")
            self._can_confine, reason = (True, "") if self._can_own_pids else self._probe()
            if not self._can_confine:
                self._confine_failure = reason
                log.warning("UNCONFINED: no private file-system view can be made here, so "
                            "builds and workers see the whole file system (%s)", reason)
            elif not self._can_own_pids:
                log.warning("no PID namespace can be made here, so builds (and the workers "
                            "of a gateway that is not root) see and may signal the "
                            "gateway's processes (%s)", pids_failure)
        return self._can_confine

    def can_own_pids(self) -> bool:
        """Whether a view can also have a PID namespace and a /proc of its own here (a
        container that masks parts of /proc allows the view but not a fresh /proc)."""
        return self.can_confine() and bool(self._can_own_pids)

    def _probe(self, *options: str) -> tuple[bool, str]:
        probe = [self.launcher(), "--writable", os.path.abspath(os.sep + "tmp"), *options,
                 "--", "/bin/sh", "-c", "exit 0"]
        try:
            done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, str(exc)
        return done.returncode == 0, done.stderr.strip()

    def isolation(self, role: str = "workers") -> dict[str, Any]:
        """What isolation this sandbox's ``role`` ("workers" or "builds") gets, in force on
        this machine (probes the launcher on first use: blocking, call off the loop)."""
        view = self.can_confine()
        linux = not self.portable
        if self.user is not None:
            user = f"{self.user.name or 'uid'} ({self.user.uid})"
        elif self.endpoint_users is not None:
            user = (f"a uid per endpoint from {self.endpoint_users.first}-"
                    f"{self.endpoint_users.last}")
        elif os.geteuid() == 0:
            user = "root without capabilities" if linux else "root"
        else:
            user = "the gateway's own user"
        return {
            "launcher": "linux" if linux else "portable",
            "user": user,
            "file_view": view,
            "pid_namespace": self.can_own_pids() and (role == "builds"
                                                      or self._shares_gateway_user()),
            "hidden": list(self._worker_hidden) if role == "workers" else None,
            "capabilities": "none" if linux else "unchanged",
            "no_new_privs": linux,
            "parent_death": "signal" if linux else "watcher process",
            "limits": True,
            "unconfined_reason": None if view else self._confine_failure,
        }

    def give(self, path: str | os.PathLike) -> None:
        """Hand a directory the sandboxed processes should write (the workers' HOME) to the
        sandbox user; with a uid per endpoint, let every one create files there but not
        list or remove each other's (mode 1733)."""
        if self.user is not None:
            os.chown(path, self.user.uid, self.user.gid)
        elif self.endpoint_users is not None:
            os.chmod(path, 0o1733)

    # -- the launcher binary ---------------------------------------------------------

    def _build_launcher(self) -> str:
        source = LAUNCHER_SOURCE.read_bytes()
        digest = hashlib.sha256(source).hexdigest()[:16] + ("-portable" if self.portable else "")
        cache = self._cache_dir or _default_cache_dir()
        path = cache / f"edgebook-launch-{digest}"
        cache.mkdir(mode=0o755, parents=True, exist_ok=True)
        _check_owned(cache, directory=True)
        if path.exists():
            _check_owned(path, directory=False)
            if os.access(path, os.X_OK):
                return str(path)
        tmp = cache / f".edgebook-launch-{digest}.{os.getpid()}.{threading.get_ident()}"
        command = [self._cc, "-O2", "-Wall", "-o", str(tmp), str(LAUNCHER_SOURCE)]
        if self.portable:
            command.insert(1, "-DEDGEBOOK_PORTABLE")
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


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _check_owned(path: Path, *, directory: bool) -> None:
    """Refuses a launcher (or its directory) someone else could have planted or changed:
    every worker and build of this gateway execs it, as root when the gateway is root."""
    info = os.lstat(path)
    kind = "directory" if directory else "file"
    if (stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)) is False:
        raise SandboxError(f"the worker launcher's {kind} {path} is not a regular {kind}")
    if info.st_uid != os.geteuid():
        raise SandboxError(f"refusing the worker launcher's {kind} {path}: it is owned by uid "
                           f"{info.st_uid}, not by this gateway's user (uid {os.geteuid()})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SandboxError(f"refusing the worker launcher's {kind} {path}: others may write it "
                           f"(mode {stat.S_IMODE(info.st_mode):o})")


def _default_cache_dir() -> Path:
    return paths.launcher_dir()


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


def cargo_cache_dirs(cargo_home: str | os.PathLike) -> list[Path]:
    """What a build may write in ``CARGO_HOME``: the downloaded crates (``registry/``) and
    git checkouts (``git/``), created here if missing. Not ``bin/`` nor ``config.toml``,
    where a build could plant a ``rustc-wrapper`` that outlives it."""
    home = Path(cargo_home)
    dirs = [home / "registry", home / "git"]
    for path in dirs:
        path.mkdir(parents=True, exist_ok=True)
    return dirs


def isolation_report(workers: Sandbox | None, builds: Sandbox | None) -> dict[str, Any]:
    """The isolation in force for workers and builds (None: this process starts none),
    with ``unconfined`` naming each that runs without a view of its own (for
    ``/api/health`` and the ``serve`` banner)."""
    report: dict[str, Any] = {}
    unconfined = []
    for role, sandbox in (("workers", workers), ("builds", builds)):
        report[role] = sandbox.isolation(role) if sandbox is not None else None
        if report[role] is not None and not report[role]["file_view"]:
            unconfined.append(role)
    report["unconfined"] = unconfined
    return report


def describe_isolation(report: dict[str, Any]) -> str:
    """One line for people: what runs confined and what does not."""
    parts = []
    for role in ("workers", "builds"):
        facts = report.get(role)
        if facts is None:
            continue
        if facts["file_view"]:
            pids = " and PID namespace" if facts["pid_namespace"] else ""
            parts.append(f"{role} confined (own file-system view{pids}, "
                         f"user: {facts['user']})")
        else:
            parts.append(f"{role} UNCONFINED: they see the whole file system as "
                         f"{facts['user']} ({facts['unconfined_reason'] or 'no view'})")
    return "isolation: " + "; ".join(parts)
