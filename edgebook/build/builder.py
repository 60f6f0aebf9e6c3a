"""The build service: handler source in, native worker binary (or diagnostics) out.

``Builder.build(BuildRequest)`` computes a content hash of everything that decides the
binary (generated source, dependencies, profile, SDK version and sources, rustc version,
target); a hit returns ``<data_dir>/bin/<hash>`` without running cargo. A miss writes the
endpoint's package into the data dir's workspace (see ``edgebook.workspace``), runs
``cargo build --message-format=json`` against the shared target dir, maps rustc's
diagnostics onto the user's lines (see ``edgebook.diagnostics``) and copies the binary out
of the target dir into ``bin/<hash>``.

Scheduling: one build per endpoint at a time; a newer submit for an endpoint supersedes
its queued (not yet running) build; endpoints share ``max_parallel`` build slots in
arrival order. Builds run cargo as an asyncio subprocess in its own process group, which
is killed on timeout or cancellation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..diagnostics import (Diagnostic, SourceMap, generated_problem, render_diagnostics)
from .. import paths
from ..endpoint_options import PROFILES
from ..sandbox import BUILD_LIMITS, Limits, Sandbox, build_env, build_user, cargo_cache_dirs
from . import cargo
from .cargo import ToolchainError
from .sdk import SdkFingerprint, find_sdk_dir, sdk_info
from .source import HandlerSource, SourceError, analyse, merged_dependencies
from .workspace import LAYOUT_VERSION, WORKSPACE_PROFILES, Workspace, package_name

__all__ = ["BuildRequest", "BuildResult", "Builder", "Diagnostic", "PrebuildError",
           "prebuild", "render_diagnostics"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[dict], None]

STATUSES = ("ok", "failed", "timeout", "superseded", "cancelled")

#: How much of cargo's stderr a result keeps (the tail).
MAX_LOG_CHARS = 256 * 1024

#: Environment that changes what rustc produces, so it is part of the content hash.
_HASHED_ENV = ("RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS",
               "CARGO_PROFILE_DEV_OPT_LEVEL", "CARGO_PROFILE_RELEASE_OPT_LEVEL")

#: The throwaway handler ``prebuild`` compiles: it pulls in everything a typical handler
#: does (the SDK, serde's derive, ``json!``), so their artifacts land in the target dir.
PREBUILD_SOURCE = """\
use rust_edge_gateway_sdk::prelude::*;

#[derive(Deserialize, Serialize)]
struct Greeting {
    name: String,
}

fn handle(req: Request) -> Response {
    let greeting: Greeting = serde_json::from_str(req.body.as_deref().unwrap_or("{}"))
        .unwrap_or(Greeting { name: "world".to_string() });
    Response::ok(json!({ "hello": greeting.name, "path": req.path }))
}
"""


@dataclass(frozen=True)
class BuildRequest:
    """What to build: an endpoint name, its Rust source, extra dependencies, a profile.

    ``deps`` entries are ``"name@requirement"`` optionally followed by ``+feat,feat``;
    ``profile`` is ``"dev"`` (fast to build) or ``"release"`` (fast to run).
    """

    name: str
    source: str
    deps: tuple[str, ...] = ()
    profile: str = "dev"

    def __post_init__(self):
        object.__setattr__(self, "deps", tuple(self.deps))


@dataclass
class BuildResult:
    """The outcome of one build. ``binary`` is set exactly when ``ok``."""

    ok: bool
    status: str
    binary: Path | None = None
    content_hash: str = ""
    cached: bool = False
    diagnostics: list[Diagnostic] = field(default_factory=list)
    duration: float = 0.0
    profile: str = "dev"
    log: str = ""
    name: str = ""

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "warning"]

    def render(self, source: str) -> str:
        """The diagnostics over ``source`` as plain text (see ``render_diagnostics``)."""
        return render_diagnostics(self.diagnostics, source)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["binary"] = str(self.binary) if self.binary else None
        return data


class PrebuildError(RuntimeError):
    """``prebuild`` could not compile the SDK; the message carries cargo's errors."""


# ---------------------------------------------------------------------------------------
# Progress


class _Progress:
    """Sends progress events for one build to its callback; a failing callback is logged."""

    def __init__(self, request: BuildRequest, callback: ProgressCallback | None, started: float):
        self.request = request
        self.callback = callback
        self.started = started
        self.phase = ""

    def emit(self, phase: str, **extra) -> None:
        self.phase = phase
        if self.callback is None:
            return
        event = {"name": self.request.name, "profile": self.request.profile, "phase": phase,
                 "elapsed": round(time.monotonic() - self.started, 3), **extra}
        try:
            self.callback(event)
        except Exception:  # a broken listener must not break the build
            logger.exception("progress callback failed for %s", self.request.name)


# ---------------------------------------------------------------------------------------
# Scheduling state


@dataclass(eq=False)
class _Ticket:
    request: BuildRequest
    handler: HandlerSource
    key: str
    progress: _Progress
    future: asyncio.Future
    task: asyncio.Task | None = None


@dataclass(eq=False)
class _Slot:
    """The builds of one endpoint: at most one running and one waiting."""

    pending: _Ticket | None = None
    current: _Ticket | None = None
    driver: asyncio.Task | None = None


class _Scheduler:
    """Per-event-loop scheduling state (asyncio primitives belong to one loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_parallel: int):
        self.loop = loop
        self.slots: dict[str, _Slot] = {}
        self.semaphore = asyncio.Semaphore(max_parallel)


# ---------------------------------------------------------------------------------------
# The builder


class Builder:
    """Builds handler binaries for one data dir; see the module docstring.

    ``cargo`` is the cargo executable to run (a path or a name on PATH), ``rustc`` the
    compiler whose version goes into the content hash (default: ``$RUSTC`` or ``rustc``).
    ``time_limit`` bounds each build's cargo time in seconds. ``offline_first`` runs cargo
    ``--offline`` first and goes online only when resolution needs the registry.
    """

    def __init__(self, data_dir: str | os.PathLike, *, sdk_dir: str | os.PathLike | None = None,
                 target_dir: str | os.PathLike | None = None, cargo: str = "cargo",
                 rustc: str | None = None, time_limit: float = 300.0, max_parallel: int = 1,
                 offline_first: bool = True, sandbox: Sandbox | None = None,
                 limits: Limits = BUILD_LIMITS):
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.data_dir = Path(data_dir).resolve()
        self.sdk = sdk_info(Path(sdk_dir).resolve() if sdk_dir else find_sdk_dir())
        self.target_dir = Path(target_dir or paths.target_dir()).expanduser().resolve()
        self.bin_dir = self.data_dir / "bin"
        self.cargo = cargo
        self.rustc = rustc or os.environ.get("RUSTC") or "rustc"
        self.time_limit = time_limit
        self.max_parallel = max_parallel
        self.offline_first = offline_first
        # cargo (and so every build.rs and proc macro) starts through the sandbox launcher
        self.sandbox = sandbox if sandbox is not None else Sandbox(build_user())
        self.limits = limits
        self.workspace = Workspace(self.data_dir, self.sdk)
        self._sdk_fingerprint = SdkFingerprint(self.sdk.dir)
        self._toolchain: tuple[str, str] | None = None
        self._scheduler_state: _Scheduler | None = None

    # -- public API ----------------------------------------------------------------------

    async def build(self, request: BuildRequest,
                    on_progress: ProgressCallback | None = None) -> BuildResult:
        """Builds ``request``; never raises for build problems (see ``BuildResult.status``).

        Cancelling the awaiting task cancels the build (cargo is killed) and re-raises.
        """
        progress = _Progress(request, on_progress, time.monotonic())
        try:
            _check_request(request)
            handler = analyse(request.source, request.deps)
            key = await self.content_hash_of(handler, request.profile)
        except SourceError as exc:
            diag = generated_problem(exc.message, line=exc.line, column=1 if exc.line else None,
                                     help=exc.help)
            return self._finish(progress, "failed", diagnostics=[diag], log=exc.message)
        except ToolchainError as exc:
            return self._finish(progress, "failed", log=str(exc),
                                diagnostics=[generated_problem(str(exc))])
        sched = self._scheduler()
        binary = self._cached_binary(key)
        if binary is not None:
            slot = sched.slots.get(request.name)
            if slot is not None:  # a queued older build must not land after this one
                self._supersede(slot)
            return self._finish(progress, "ok", key=key, binary=binary, cached=True,
                                log=f"cache hit: {binary}")
        slot = sched.slots.setdefault(request.name, _Slot())
        ticket = _Ticket(request, handler, key, progress, sched.loop.create_future())
        self._supersede(slot)
        slot.pending = ticket
        progress.emit("queued")
        if slot.driver is None:
            slot.driver = sched.loop.create_task(self._drive(sched, request.name, slot))
        try:
            return await asyncio.shield(ticket.future)
        except asyncio.CancelledError:
            self._cancel_ticket(slot, ticket)
            raise

    async def cached_binary(self, request: BuildRequest) -> Path | None:
        """The binary ``request`` would produce if it is already built, without building.

        Lets a caller deploy a cached release build straight away instead of going live
        on ``dev`` first. ``None`` when not cached or when the source is invalid.
        """
        try:
            _check_request(request)
            handler = analyse(request.source, request.deps)
            return self._cached_binary(await self.content_hash_of(handler, request.profile))
        except (SourceError, ToolchainError):
            return None

    def cancel(self, name: str) -> bool:
        """Cancels the waiting and running builds of endpoint ``name``; True if there were any."""
        sched = self._scheduler_state
        slot = sched.slots.get(name) if sched else None
        if slot is None:
            return False
        found = False
        for ticket in (slot.pending, slot.current):
            if ticket is not None:
                self._cancel_ticket(slot, ticket)
                found = True
        return found

    async def aclose(self) -> None:
        """Cancels every build in progress and waits for their cargo processes to end."""
        sched = self._scheduler_state
        if sched is None:
            return
        drivers = [slot.driver for slot in sched.slots.values() if slot.driver]
        for name in list(sched.slots):
            self.cancel(name)
        if drivers:
            await asyncio.gather(*drivers, return_exceptions=True)

    async def content_hash_of(self, handler: HandlerSource, profile: str) -> str:
        """The cache key of a build: equal keys mean interchangeable binaries."""
        rustc_version, host = await self._toolchain_info()
        material = {
            "layout": LAYOUT_VERSION,
            "main_rs": handler.main_rs(),
            "dependencies": merged_dependencies(handler.dependencies),
            "profile": profile,
            "profiles": WORKSPACE_PROFILES,
            "sdk_version": self.sdk.version,
            "sdk_sources": self._sdk_fingerprint.value(),
            "rustc": rustc_version,
            "target": host,
            "env": {name: os.environ.get(name) for name in _HASHED_ENV},
        }
        blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def binary_path(self, content_hash: str) -> Path:
        return self.bin_dir / content_hash

    def package_name(self, endpoint: str) -> str:
        return package_name(self.data_dir, endpoint)

    def remove(self, name: str) -> None:
        """Forgets an endpoint's package in the workspace (its cached binaries stay)."""
        self.workspace.remove_package(self.package_name(name))

    def prebuild(self, profiles: tuple[str, ...] = PROFILES,
                 on_progress: ProgressCallback | None = None) -> list[BuildResult]:
        """Compiles the SDK and its dependencies into the shared target dir (synchronous).

        Builds a throwaway handler in a temporary data dir for each profile, so every data
        dir sharing the target dir starts warm. Raises ``PrebuildError`` on failure.
        """
        return prebuild(sdk_dir=self.sdk.dir, target_dir=self.target_dir, cargo=self.cargo,
                        rustc=self.rustc, profiles=profiles, on_progress=on_progress)

    # -- scheduling ----------------------------------------------------------------------

    def _scheduler(self) -> _Scheduler:
        loop = asyncio.get_running_loop()
        sched = self._scheduler_state
        if sched is None or sched.loop is not loop:
            if sched is not None and not sched.loop.is_closed() and sched.slots:
                raise RuntimeError("a Builder is in use on another event loop")
            sched = self._scheduler_state = _Scheduler(loop, self.max_parallel)
        return sched

    async def _drive(self, sched: _Scheduler, name: str, slot: _Slot) -> None:
        """Runs the endpoint's builds one after another until none is waiting."""
        try:
            while slot.pending is not None:
                async with sched.semaphore:
                    ticket, slot.pending = slot.pending, None
                    if ticket is None:
                        break
                    slot.current = ticket
                    ticket.task = sched.loop.create_task(self._execute(ticket))
                    try:
                        await asyncio.wait({ticket.task})
                    finally:
                        if not ticket.task.done():  # the driver itself was cancelled
                            ticket.task.cancel()
                            await asyncio.wait({ticket.task})
                        slot.current = None
                        self._resolve(ticket, self._outcome(ticket))
        finally:
            slot.driver = None
            if slot.pending is None and slot.current is None and sched.slots.get(name) is slot:
                del sched.slots[name]

    def _outcome(self, ticket: _Ticket) -> BuildResult:
        task = ticket.task
        if task.cancelled():
            return self._finish(ticket.progress, "cancelled", key=ticket.key,
                                log="build cancelled")
        exc = task.exception()
        if exc is not None:
            logger.error("build of %s crashed", ticket.request.name, exc_info=exc)
            return self._finish(ticket.progress, "failed", key=ticket.key, log=repr(exc),
                                diagnostics=[generated_problem(f"internal build error: {exc}")])
        return task.result()

    def _supersede(self, slot: _Slot) -> None:
        ticket, slot.pending = slot.pending, None
        if ticket is not None:
            self._resolve(ticket, self._finish(ticket.progress, "superseded", key=ticket.key,
                                               log="superseded by a newer build"))

    def _cancel_ticket(self, slot: _Slot, ticket: _Ticket) -> None:
        if slot.pending is ticket:
            slot.pending = None
            self._resolve(ticket, self._finish(ticket.progress, "cancelled", key=ticket.key,
                                               log="build cancelled before it started"))
        elif slot.current is ticket and ticket.task is not None:
            ticket.task.cancel()

    @staticmethod
    def _resolve(ticket: _Ticket, result: BuildResult) -> None:
        if not ticket.future.done():
            ticket.future.set_result(result)

    # -- one build -------------------------------------------------------------------------

    async def _execute(self, ticket: _Ticket) -> BuildResult:
        request, progress = ticket.request, ticket.progress
        binary = self._cached_binary(ticket.key)  # built by another endpoint meanwhile?
        if binary is not None:
            return self._finish(progress, "ok", key=ticket.key, binary=binary, cached=True,
                                log=f"cache hit: {binary}")
        package = self.package_name(request.name)
        ws = self.workspace
        ws.ensure()
        snapshot = ws.snapshot(package)
        main_rs = ws.write_package(package, request.name, ticket.handler)
        smap = self._source_map(package, main_rs, ticket.handler, request.name)
        deadline = time.monotonic() + self.time_limit
        offline = self.offline_first
        logs = []
        try:
            run = await self._run_cargo(package, request.profile, offline, deadline, ticket)
            logs.append(run.stderr)
            if offline and run.needs_registry:
                logs.append("edgebook: offline resolution failed; retrying with the registry\n")
                run = await self._run_cargo(package, request.profile, False, deadline, ticket)
                logs.append(run.stderr)
        except cargo.CargoTimeout:
            return self._finish(progress, "timeout", key=ticket.key, log="".join(logs) + (
                f"edgebook: build exceeded its time limit of {self.time_limit:g} s; "
                "cargo was killed\n"), diagnostics=[generated_problem(
                    f"the build took longer than {self.time_limit:g} s and was stopped")])
        diagnostics = cargo.diagnostics(run, smap, ticket.handler)
        log_text = "".join(logs)
        if run.returncode != 0 or run.executable is None:
            if not any(d.is_error for d in diagnostics):
                diagnostics.append(generated_problem(
                    f"cargo failed with exit status {run.returncode}"))
            if not run.compiled_any or not run.rustc_errors:
                ws.restore(package, snapshot)  # keep a broken manifest out of the workspace
            return self._finish(progress, "failed", key=ticket.key, log=log_text,
                                diagnostics=diagnostics)
        binary = await asyncio.to_thread(self._install, Path(run.executable), ticket.key)
        return self._finish(progress, "ok", key=ticket.key, binary=binary, log=log_text,
                            diagnostics=diagnostics)

    async def _run_cargo(self, package: str, profile: str, offline: bool, deadline: float,
                         ticket: _Ticket) -> cargo.CargoRun:
        ticket.progress.emit("resolving", online=not offline)
        env = self._cargo_env()
        return await cargo.run(
            self._cargo_command(package, profile, offline), env=env, cwd=self.workspace.root,
            sandbox=self.sandbox, limits=self.limits, file_view=self._file_view(env),
            deadline=deadline, package=package, handler=ticket.handler,
            emit=ticket.progress.emit)

    def _cargo_command(self, package: str, profile: str, offline: bool) -> list[str]:
        command = [self.cargo, "build", "--message-format=json", "--package", package,
                   "--manifest-path", str(self.workspace.root / "Cargo.toml")]
        command += ["--release"] if profile == "release" else ["--profile", profile]
        if offline:
            command.append("--offline")
        return command

    def _file_view(self, env: dict[str, str]) -> dict[str, list[str]]:
        """What cargo may see and write: the data dir's files other than the workspace are
        hidden (the runtime file holds the admin token); only the workspace (with its own
        temp dir, ``TMPDIR``), the target dir and the cargo cache are writable."""
        workspace = Path(self.workspace.root).resolve()
        hide = [str(entry) for entry in self.data_dir.iterdir()
                if entry.resolve() != workspace and not workspace.is_relative_to(entry.resolve())]
        self.target_dir.mkdir(parents=True, exist_ok=True)  # it cannot be made inside
        cargo_home = Path(env.get("CARGO_HOME") or Path.home() / ".cargo")
        writable = [workspace, self.target_dir, *cargo_cache_dirs(cargo_home)]
        return {"hide": hide, "writable": [str(p) for p in writable if p.exists()]}

    def _cargo_env(self) -> dict[str, str]:
        env = build_env()
        env.update(CARGO_TARGET_DIR=str(self.target_dir), CARGO_TERM_COLOR="never",
                   CARGO_TERM_PROGRESS_WHEN="never")
        env.pop("CARGO_BUILD_TARGET", None)  # binaries are for this host, where they run
        tmp = Path(self.workspace.root) / ".tmp"  # the only temp dir a confined build can write
        tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmp)
        return env

    def _source_map(self, package: str, main_rs: Path, handler: HandlerSource,
                    name: str) -> SourceMap:
        relative = f"handlers/{package}/src/main.rs"
        absolute = str(main_rs)

        def is_user_file(file_name: str) -> bool:
            return file_name in (relative, absolute) or file_name.endswith(
                f"/{package}/src/main.rs")

        anchor = None
        if handler.handle_line is not None:
            anchor = (handler.handle_line, handler.handle_column or 1)
        return SourceMap(is_user_file=is_user_file, user_lines=handler.user_lines,
                         anchor=anchor, display_name=f"{name}.rs",
                         file_names=(absolute, relative))

    def _install(self, built: Path, key: str) -> Path:
        """Copies a freshly built binary out of the shared target dir into ``bin/<key>``."""
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        final = self.binary_path(key)
        tmp = final.with_name(f".{key}.{os.getpid()}.tmp")
        shutil.copyfile(built, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, final)
        return final

    def _cached_binary(self, key: str) -> Path | None:
        path = self.binary_path(key)
        return path if path.is_file() and os.access(path, os.X_OK) else None

    def _finish(self, progress: _Progress, status: str, *, key: str = "",
                binary: Path | None = None, cached: bool = False,
                diagnostics: list[Diagnostic] | None = None, log: str = "") -> BuildResult:
        if len(log) > MAX_LOG_CHARS:
            log = "...\n" + log[-MAX_LOG_CHARS:]
        result = BuildResult(ok=status == "ok", status=status, binary=binary, content_hash=key,
                             cached=cached, diagnostics=diagnostics or [],
                             duration=round(time.monotonic() - progress.started, 4),
                             profile=progress.request.profile, log=log,
                             name=progress.request.name)
        progress.emit("done", status=status, cached=cached)
        return result

    # -- toolchain ---------------------------------------------------------------------------

    async def _toolchain_info(self) -> tuple[str, str]:
        """``rustc -vV`` and the host triple, run once per Builder."""
        if self._toolchain is None:  # two first builds may both ask; the answer is the same
            self._toolchain = await cargo.rustc_version(self.rustc, self.data_dir)
        return self._toolchain


def _check_request(request: BuildRequest) -> None:
    if not isinstance(request.name, str) or not request.name.strip() or "\0" in request.name:
        raise SourceError("the endpoint name is empty or invalid")
    if request.profile not in PROFILES:
        raise SourceError(f"unknown profile {request.profile!r}; use one of "
                          + ", ".join(PROFILES))
    if not isinstance(request.source, str):
        raise SourceError("the handler source must be text")


# ---------------------------------------------------------------------------------------
# Prebuild


def prebuild(*, sdk_dir: str | os.PathLike | None = None,
             target_dir: str | os.PathLike | None = None, cargo: str = "cargo",
             rustc: str | None = None, profiles: tuple[str, ...] = PROFILES,
             time_limit: float = 3600.0,
             on_progress: ProgressCallback | None = None) -> list[BuildResult]:
    """Compiles the SDK and its dependencies for ``profiles`` into the shared target dir.

    Synchronous (for the CLI's ``edgebook prebuild``); builds ``PREBUILD_SOURCE`` in a
    temporary data dir, so no data dir is touched. Raises ``PrebuildError`` on failure.
    """
    results = []
    with tempfile.TemporaryDirectory(prefix="edgebook-prebuild-") as tmp:
        builder = Builder(tmp, sdk_dir=sdk_dir, target_dir=target_dir, cargo=cargo,
                          rustc=rustc, time_limit=time_limit)
        for profile in profiles:
            request = BuildRequest("prebuild", PREBUILD_SOURCE, profile=profile)
            result = asyncio.run(builder.build(request, on_progress))
            results.append(result)
            if not result.ok:
                raise PrebuildError(
                    f"prebuilding the SDK ({profile}) failed: {result.status}\n"
                    + render_diagnostics(result.diagnostics, PREBUILD_SOURCE)
                    + "\n" + result.log[-4000:])
    return results
