"""One cargo run: cargo through the sandbox launcher, its JSON messages read as they come
(progress events, the built executable), killed with everything it started on timeout or
cancellation, and rustc's diagnostics mapped onto the user's lines."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..diagnostics import Diagnostic, SourceMap, from_cargo_stderr, from_rustc
from ..sandbox import Limits, Sandbox, SandboxError
from .source import HandlerSource, merged_dependencies

#: ``emit(phase, **fields)``: a progress event of the build this run belongs to.
Emit = Callable[..., None]


@dataclass
class CargoRun:
    """What one cargo invocation produced."""

    returncode: int | None = None
    messages: list[dict] = field(default_factory=list)
    stderr: str = ""
    executable: str | None = None
    compiled_any: bool = False

    @property
    def rustc_errors(self) -> bool:
        return any((m.get("message") or {}).get("level") == "error" for m in self.messages)

    @property
    def needs_registry(self) -> bool:
        """An offline attempt failed in resolution or download (not in compilation)."""
        return (self.returncode not in (0, None) and not self.rustc_errors
                and "offline" in self.stderr.lower())


class CargoTimeout(Exception):
    """The run passed its deadline; cargo and its children were killed."""


async def run(command: list[str], *, env: dict[str, str], cwd: Path, sandbox: Sandbox,
              limits: Limits, file_view: dict[str, list[str]], deadline: float,
              package: str, handler: HandlerSource, emit: Emit) -> CargoRun:
    """Run one cargo build (``command``) through the sandbox launcher until ``deadline``
    (a ``time.monotonic()`` value); raises ``CargoTimeout`` after killing it."""
    run = CargoRun()
    resolved = shutil.which(command[0], path=env.get("PATH"))
    if resolved is None:
        run.returncode = -1
        run.stderr = f"error: could not run cargo ({command[0]}): not found\n"
        return run
    cargo, command = command[0], [resolved, *command[1:]]
    try:
        command = await asyncio.to_thread(
            functools.partial(sandbox.wrap, command, limits, chdir=str(cwd), **file_view))
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, limit=64 * 1024 * 1024)
    except (OSError, SandboxError) as exc:
        run.returncode = -1
        run.stderr = f"error: could not run cargo ({cargo}): {exc}\n"
        return run
    watcher = _ArtifactWatcher(package, handler, emit)
    readers = asyncio.gather(_read_messages(proc.stdout, run, watcher, package),
                             _read_text(proc.stderr))
    try:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise asyncio.TimeoutError
        await asyncio.wait_for(asyncio.shield(proc.wait()), remaining)
        _, run.stderr = await readers
    except asyncio.TimeoutError:
        await _kill_group(proc, readers)
        raise CargoTimeout from None
    except BaseException:  # cancelled: cargo must not outlive its build
        await _kill_group(proc, readers)
        raise
    run.returncode = proc.returncode
    return run


async def _read_messages(stream: asyncio.StreamReader, run: CargoRun,
                         watcher: "_ArtifactWatcher", package: str) -> None:
    while True:
        line = await stream.readline()
        if not line:
            return
        try:
            message = json.loads(line)
        except ValueError:
            continue
        reason = message.get("reason")
        if reason == "compiler-artifact":
            if not message.get("fresh"):
                run.compiled_any = True
            if _package_of(message) == package and message.get("executable"):
                run.executable = message["executable"]
            watcher.artifact(message)
        elif reason == "compiler-message":
            run.compiled_any = True
            run.messages.append(message)

def diagnostics(run: CargoRun, smap: SourceMap, handler: HandlerSource) -> list[Diagnostic]:
    """rustc's messages mapped onto the user's lines; cargo's own errors when rustc had
    none (a dependency that does not resolve, say), pointed at the dependency's line."""
    diagnostics: list[Diagnostic] = []
    seen = set()
    for message in run.messages:
        rustc = message.get("message") or {}
        if _is_summary(rustc):
            continue
        diag = from_rustc(rustc, smap)
        if diag.generated and not diag.is_error:
            continue  # a lint about edgebook's own lines is not the user's business
        ident = (diag.level, diag.message, diag.line, diag.column)
        if ident in seen:
            continue
        seen.add(ident)
        diagnostics.append(diag)
    if run.returncode != 0 and not any(d.is_error for d in diagnostics):
        for diag in from_cargo_stderr(run.stderr):
            if diag.message.startswith("could not compile"):
                continue
            _locate_dependency_error(diag, handler)
            diagnostics.append(diag)
    return diagnostics


class ToolchainError(RuntimeError):
    """rustc could not be run or did not say what it is."""


async def rustc_version(rustc: str, cwd: Path) -> tuple[str, str]:
    cwd = cwd if cwd.is_dir() else Path.cwd()
    try:
        proc = await asyncio.create_subprocess_exec(
            rustc, "-vV", cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise ToolchainError(f"could not run {rustc}: {exc}; is Rust installed?") from None
    out, err = await proc.communicate()
    text = out.decode(errors="replace")
    host = re.search(r"^host:\s*(\S+)", text, re.M)
    if proc.returncode != 0 or host is None:
        raise ToolchainError(f"`{rustc} -vV` failed: {err.decode(errors='replace').strip()}")
    return text, host.group(1)


class _ArtifactWatcher:
    """Turns cargo's ``compiler-artifact`` messages into progress events.

    Cargo reports every unit, fresh or not. Once every direct dependency of the handler
    has been reported, what remains is rustc compiling and linking the handler itself;
    that is the ``linking`` phase.
    """

    def __init__(self, package: str, handler: HandlerSource, emit: Emit):
        self.emit = emit
        self.package = package
        deps = merged_dependencies(handler.dependencies)
        names = {"edgebook_sdk", "rust_edge_gateway_sdk"}
        names |= {spec.get("package", name).replace("-", "_") for name, spec in deps.items()}
        self.waiting = names
        self.linking = False

    def artifact(self, message: dict) -> None:
        target = message.get("target") or {}
        kinds = target.get("kind") or []
        if _package_of(message) == self.package:
            return
        if not message.get("fresh") and "custom-build" not in kinds:
            self.emit("compiling", crate=target.get("name", "?"))
        if "custom-build" in kinds:
            return
        self.waiting.discard(str(target.get("name", "")).replace("-", "_"))
        if not self.waiting and not self.linking:
            self.linking = True
            self.emit("linking", crate=self.package)


def _package_of(message: dict) -> str:
    """The package name in a cargo message's ``package_id`` (old and new formats)."""
    pid = message.get("package_id", "")
    if "#" in pid:  # "path+file:///x/h_a#0.0.0" or "registry+...#itoa@1.0.0"
        tail = pid.rsplit("#", 1)[1]
        if "@" in tail:
            return tail.split("@", 1)[0]
        return pid.rsplit("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return pid.split(" ", 1)[0]  # "itoa 1.0.0 (registry+...)"


def _is_summary(rustc: dict) -> bool:
    """rustc's closing lines ("aborting due to ...", "N warnings emitted"), not diagnostics."""
    if rustc.get("level") == "failure-note":
        return True
    if rustc.get("spans"):
        return False
    text = rustc.get("message", "")
    return text.startswith("aborting due to") or bool(
        re.match(r"^\d+ warnings? emitted", text))


def _locate_dependency_error(diag: Diagnostic, handler: HandlerSource) -> None:
    """Points a cargo error that names one of the user's dependencies at its declaration."""
    text = diag.rendered or diag.message
    for name in handler.dependencies:
        if re.search(rf"`{re.escape(name)}`|\b{re.escape(name)}\b", text):
            pattern = re.compile(rf"^//!\s*{re.escape(name)}\s*=")
            for number, line in enumerate(handler.source.splitlines(), start=1):
                if pattern.match(line.strip()):
                    diag.line, diag.column = number, 1
                    return
            return


async def _read_text(stream: asyncio.StreamReader) -> str:
    chunks = []
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(chunk)


async def _kill_group(proc: asyncio.subprocess.Process, readers: asyncio.Future) -> None:
    """Kills cargo and everything it started (rustc, build scripts), then reaps it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    await asyncio.shield(proc.wait())
    readers.cancel()
    try:
        await readers
    except BaseException:
        pass
