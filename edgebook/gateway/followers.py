"""Multi-process mode: a primary gateway and N-1 followers sharing the data-plane port.

Each process binds its own ``SO_REUSEPORT`` socket, so the kernel spreads connections
across them. The primary owns the admin API, registry writes and builds. Each follower is
a child process (``python -m edgebook _follow``) that runs its own supervisor and data
plane and mirrors the registry. The primary drives it over its stdin/stdout, one line per
message, every question numbered so an answer pairs with its question:

- the follower writes ``ready`` once it listens and has restored the registry's endpoints;
- ``sync N``: the follower re-reads the registry, makes its supervisor match it (same
  revisions, same binaries by content hash) and answers ``synced N``;
- ``metrics N {"name": ...}`` / ``logs N {"name": ..., "tail": ...}``: its share of an
  endpoint's counters (with its latency window) or log lines, answered ``metrics N {...}``
  / ``logs N [...]``, so the admin API shows every process's requests, not the primary's;
- end of stdin (the primary closed it, or died) means shut down: stop accepting, drain,
  stop workers, exit 0. So followers never outlive their primary.

An answer that comes after its question timed out carries an old number and is dropped,
so a late ``synced`` can never stand for a later round. The primary answers a deploy only
after every live follower has synced, so when the admin API says "running", every process
serves the new revision. A follower that dies is restarted with backoff (and synced before
it counts again); while it is down its share of the port is simply not listening.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .core import Gateway, GatewayConfig, abs_binary, binary_exists
from .registry import EndpointRecord
from .supervisor import DeployError

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 60.0
#: How long the admin API waits for a follower's metrics or log lines.
ASK_TIMEOUT = 5.0
#: Seconds before restarting a follower after its 1st, 2nd, ... death in a row.
RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: A follower that lived this long starts its backoff over when it dies.
STABLE_AFTER = 60.0


class FollowerError(Exception):
    """A follower did not start or did not answer."""


class _Follower:
    """The primary's handle on one follower process (the one owner of that process).

    One task reads its stdout for as long as it lives and hands each numbered answer to the
    question waiting for that number; nobody else reads the pipe."""

    def __init__(self, index: int, process: asyncio.subprocess.Process):
        self.index = index
        self.process = process
        self.started = time.monotonic()
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self._answers: dict[int, asyncio.Future[tuple[str, str]]] = {}
        self._reader = loop.create_task(self._read())

    @property
    def label(self) -> str:
        return f"follower {self.index} (pid {self.process.pid})"

    @property
    def serving(self) -> bool:
        ready = self.ready
        return ready.done() and ready.exception() is None and self.process.returncode is None

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except asyncio.TimeoutError:
            raise FollowerError(f"{self.label} was not ready within {timeout:g} s") from None

    async def ask(self, number: int, verb: str, expect: str, payload: Any = None, *,
                  timeout: float) -> Any:
        """Send question ``number`` and return its answer's JSON (None without one)."""
        future = asyncio.get_running_loop().create_future()
        self._answers[number] = future
        line = f"{verb} {number}" + ("" if payload is None else " " + json.dumps(payload))
        try:
            try:
                self.process.stdin.write(line.encode() + b"\n")
                await self.process.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise FollowerError(f"{self.label} is gone: {exc}") from None
            try:
                word, body = await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise FollowerError(f"{self.label} did not answer {verb} {number} within "
                                    f"{timeout:g} s") from None
        finally:
            self._answers.pop(number, None)
        if word != expect:
            raise FollowerError(f"{self.label} answered {word!r} to {verb} {number}")
        return json.loads(body) if body else None

    async def _read(self) -> None:
        try:
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    break
                word, _, rest = line.decode(errors="replace").strip().partition(" ")
                if word == "ready":
                    if not self.ready.done():
                        self.ready.set_result(None)
                    continue
                number, _, body = rest.partition(" ")
                future = self._answers.pop(int(number), None) if number.isdigit() else None
                if future is None or future.done():
                    log.info("%s: dropped a late or unasked-for answer %r", self.label,
                             line[:80])
                    continue
                future.set_result((word, body))
        finally:
            gone = FollowerError(f"{self.label} exited")
            if not self.ready.done():
                self.ready.set_exception(gone)
            for future in self._answers.values():
                if not future.done():
                    future.set_exception(gone)
            self._answers.clear()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


def follower_command(config: GatewayConfig) -> list[str]:
    return [sys.executable, "-m", "edgebook", "_follow",
            "--data-dir", config.data_dir, "--host", config.host, "--port", str(config.port),
            "--drain-timeout", str(config.drain_timeout), *(["--dev"] if config.dev else []),
            *(["--server-timing"] if config.server_timing else [])]


class FollowerSet:
    """Starts, supervises, syncs, asks and stops the followers of one primary.

    ``command`` gives a follower's argv (tests pass a stand-in)."""

    def __init__(self, config, *, command: Callable[[int], Sequence[str]] | None = None,
                 sync_timeout: float = SYNC_TIMEOUT,
                 backoff: Sequence[float] = RESTART_BACKOFF):
        self.config = config
        self._command = command or (lambda index: follower_command(config))
        self._sync_timeout = sync_timeout
        self._backoff = tuple(backoff)
        self.followers: dict[int, _Follower] = {}  # index -> its current process
        self.restarts = 0
        self._numbers = itertools.count(1)
        # One sync round at a time: a follower reconciles one round after the other anyway.
        self._sync_lock = asyncio.Lock()
        self._stopping = False
        self._supervisors: list[asyncio.Task] = []

    async def start(self) -> None:
        for index in range(1, self.config.processes):
            self.followers[index] = await self._spawn(index)
        for follower in self.followers.values():
            await follower.wait_ready(self._sync_timeout)
        for index in self.followers:
            self._supervisors.append(asyncio.get_running_loop().create_task(
                self._supervise(index)))
        log.info("%d follower process(es) serving", len(self.followers))

    async def _spawn(self, index: int) -> _Follower:
        process = await asyncio.create_subprocess_exec(
            *self._command(index), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        return _Follower(index, process)

    async def _supervise(self, index: int) -> None:
        """Restart follower ``index`` whenever it dies, with backoff, until stopping."""
        deaths = 0
        while not self._stopping:
            follower = self.followers[index]
            code = await follower.process.wait()
            if self._stopping:
                return
            lived = time.monotonic() - follower.started
            deaths = 1 if lived >= STABLE_AFTER else deaths + 1
            delay = self._backoff[min(deaths, len(self._backoff)) - 1]
            log.error("%s exited with %s after %.1f s; restarting in %g s", follower.label,
                      code, lived, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                replacement = await self._spawn(index)
            except OSError as exc:
                log.error("follower %d could not be started: %s", index, exc)
                continue
            self.followers[index] = replacement  # not serving until ready and synced
            try:
                await replacement.wait_ready(self._sync_timeout)
                async with self._sync_lock:  # catch up with what changed while it started
                    await replacement.ask(next(self._numbers), "sync", "synced",
                                          timeout=self._sync_timeout)
            except FollowerError as exc:
                log.error("restarted %s", exc)
                replacement.kill()
                continue
            self.restarts += 1
            log.info("%s restarted", replacement.label)

    def serving(self) -> list[_Follower]:
        return [f for f in self.followers.values() if f.serving]

    async def sync(self) -> None:
        """Tell every serving follower to resync from the registry and wait until it has."""
        async with self._sync_lock:
            number = next(self._numbers)
            alive = self.serving()
            results = await asyncio.gather(
                *(f.ask(number, "sync", "synced", timeout=self._sync_timeout) for f in alive),
                return_exceptions=True)
            for follower, result in zip(alive, results):
                if isinstance(result, BaseException):
                    log.error("%s did not sync: %s", follower.label, result)

    async def ask_all(self, verb: str, payload: Any) -> list[tuple[int, Any]]:
        """``(index, answer)`` of every serving follower that answered ``verb`` in time."""
        number = next(self._numbers)
        alive = self.serving()
        results = await asyncio.gather(
            *(f.ask(number, verb, verb, payload, timeout=ASK_TIMEOUT) for f in alive),
            return_exceptions=True)
        answers = []
        for follower, result in zip(alive, results):
            if isinstance(result, BaseException):
                log.warning("%s: no %s answer: %s", follower.label, verb, result)
            else:
                answers.append((follower.index, result))
        return answers

    def begin_stop(self) -> None:
        """Close every follower's stdin: each drains and exits."""
        self._stopping = True
        for follower in self.followers.values():
            stdin = follower.process.stdin
            if stdin is not None and not stdin.is_closing():
                stdin.close()

    async def wait_stopped(self, timeout: float) -> None:
        self.begin_stop()
        for task in self._supervisors:
            task.cancel()
        for follower in self.followers.values():
            try:
                await asyncio.wait_for(follower.process.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("%s did not exit; killing it", follower.label)
                follower.kill()
                await follower.process.wait()
            await follower._reader


async def run_follower(data_dir: str, host: str, port: int, drain_timeout: float, *,
                       dev: bool = False, server_timing: bool | None = None) -> int:
    """The follower's main loop (see the module docstring for the stdio protocol)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer

    def say(word: str, number: str, payload: Any = None) -> None:
        body = "" if payload is None else " " + json.dumps(payload)
        out.write(f"{word} {number}{body}".encode() + b"\n")
        out.flush()

    # SIGINT from a terminal reaches the whole process group; the primary decides when
    # followers stop (by closing their stdin), so a follower ignores it.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGTERM, lambda: reader.feed_eof())

    config = GatewayConfig(data_dir=data_dir, host=host, port=port, drain_timeout=drain_timeout,
                           dev=dev, server_timing=server_timing)
    gateway = Gateway(config, role="follower")
    await gateway.start()
    await reconcile(gateway)
    out.write(b"ready\n")
    out.flush()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb, _, rest = line.decode(errors="replace").strip().partition(" ")
            number, _, body = rest.partition(" ")
            if verb == "sync":
                try:
                    await reconcile(gateway)
                finally:
                    say("synced", number)
            elif verb in ("metrics", "logs"):
                say(verb, number, answer(gateway, verb, json.loads(body or "{}")))
    finally:
        await gateway.stop()
    return 0


def answer(gateway: Gateway, verb: str, question: dict) -> Any:
    """A follower's share of an endpoint's metrics (with its latency window) or logs."""
    name = str(question.get("name"))
    try:
        if verb == "metrics":
            return gateway.supervisor.metrics(name, latencies=True)
        return gateway.supervisor.logs(name, question.get("tail"))
    except KeyError:
        return None


# -- a follower mirrors the registry ------------------------------------------------------------

async def reconcile(gateway: Gateway) -> None:
    """Make a follower's supervisor and services match the registry."""
    await gateway.services.sync()
    wanted = {r.name: r for r in gateway.registry.endpoints()}
    for name in list(gateway.supervisor.names()):
        if name not in wanted:
            await gateway.supervisor_remove(name)
    for record in wanted.values():
        try:
            await _follow(gateway, record)
        except Exception:
            log.exception("follower could not sync endpoint %s", record.name)


async def _follow(gateway: Gateway, record: EndpointRecord) -> None:
    name = record.name
    if record.desired != "running" or record.live_revision is None:
        await gateway.supervisor_stop(name)
        gateway.register_stopped(record)
        return
    state = gateway.supervisor_state(name)
    state = state if isinstance(state, dict) else {}
    if state.get("revision") == str(record.live_revision) \
            and state.get("state") in ("running", "crash_looping"):
        return
    revision = gateway.registry.get_revision(name, record.live_revision)
    if not binary_exists(revision.binary):
        log.warning("follower: binary of %s revision %d is missing", name, revision.number)
        return
    try:
        await gateway.supervisor.deploy(gateway.endpoint_config(record),
                                        [abs_binary(gateway.config.data_dir, revision.binary)],
                                        str(revision.number))
    except DeployError as exc:
        log.warning("follower: deploy of %s failed: %s", name, getattr(exc, "reason", exc))
