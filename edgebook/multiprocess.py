"""Multi-process mode: a primary gateway and N-1 followers sharing the data-plane port.

Each process binds its own ``SO_REUSEPORT`` socket, so the kernel spreads connections
across them. The primary owns the admin API, registry writes and builds. Each follower is
a child process (``python -m edgebook _follow``) that runs its own supervisor and data
plane and mirrors the registry. The primary drives it over its stdin/stdout:

- the follower writes ``ready`` once it listens and has restored the registry's endpoints;
- the primary writes ``sync``; the follower re-reads the registry, makes its supervisor
  match it (same revisions, same binaries by content hash) and answers ``synced``;
- end of stdin (the primary closed it, or died) means shut down: stop accepting, drain,
  stop workers, exit 0. So followers never outlive their primary.

The primary answers a deploy only after every follower has synced, so when the admin API
says "running", every process serves the new revision.
"""

from __future__ import annotations

import asyncio
import logging
import sys

log = logging.getLogger("edgebook.multiprocess")

SYNC_TIMEOUT = 60.0


class FollowerError(Exception):
    """A follower did not start or did not answer."""


class _Follower:
    """The primary's handle on one follower process (the one owner of that process)."""

    def __init__(self, index: int, process: asyncio.subprocess.Process):
        self.index = index
        self.process = process

    async def expect(self, word: str, timeout: float) -> None:
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if line.strip().decode(errors="replace") != word:
            raise FollowerError(f"follower {self.index} (pid {self.process.pid}) answered "
                                f"{line!r} instead of {word!r}"
                                + (" (it exited)" if not line else ""))


class FollowerSet:
    """Starts, syncs and stops the followers of one primary."""

    def __init__(self, config):
        self.config = config
        self.followers: list[_Follower] = []
        self._lock = asyncio.Lock()  # one sync round at a time: lines must pair up

    async def start(self) -> None:
        for index in range(1, self.config.processes):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edgebook", "_follow",
                "--data-dir", self.config.data_dir, "--host", self.config.host,
                "--port", str(self.config.port),
                "--drain-timeout", str(self.config.drain_timeout),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            follower = _Follower(index, process)
            self.followers.append(follower)
        for follower in self.followers:
            await follower.expect("ready", SYNC_TIMEOUT)
        log.info("%d follower process(es) serving", len(self.followers))

    async def sync(self) -> None:
        """Tell every follower to resync from the registry and wait until they have."""
        async with self._lock:
            alive = [f for f in self.followers if f.process.returncode is None]
            for follower in alive:
                follower.process.stdin.write(b"sync\n")
            results = await asyncio.gather(
                *(self._sync_one(f) for f in alive), return_exceptions=True)
            for follower, result in zip(alive, results):
                if isinstance(result, BaseException):
                    log.error("follower %d (pid %d) did not sync: %s", follower.index,
                              follower.process.pid, result)

    async def _sync_one(self, follower: _Follower) -> None:
        await follower.process.stdin.drain()
        await follower.expect("synced", SYNC_TIMEOUT)

    def begin_stop(self) -> None:
        """Close every follower's stdin: each drains and exits."""
        for follower in self.followers:
            if follower.process.stdin is not None and not follower.process.stdin.is_closing():
                follower.process.stdin.close()

    async def wait_stopped(self, timeout: float) -> None:
        self.begin_stop()
        for follower in self.followers:
            try:
                await asyncio.wait_for(follower.process.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("follower %d did not exit; killing it", follower.index)
                follower.process.kill()
                await follower.process.wait()


async def run_follower(data_dir: str, host: str, port: int, drain_timeout: float) -> int:
    """The follower's main loop (see the module docstring for the stdio protocol)."""
    from .gateway import Gateway, GatewayConfig

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer

    def say(word: str) -> None:
        out.write(word.encode() + b"\n")
        out.flush()

    # SIGINT from a terminal reaches the whole process group; the primary decides when
    # followers stop (by closing their stdin), so a follower ignores it.
    import signal
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGTERM, lambda: reader.feed_eof())

    config = GatewayConfig(data_dir=data_dir, host=host, port=port, drain_timeout=drain_timeout)
    gateway = Gateway(config, role="follower")
    await gateway.start()
    say("ready")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.strip() == b"sync":
                try:
                    await gateway.reconcile()
                finally:
                    say("synced")
    finally:
        await gateway.stop()
    return 0
