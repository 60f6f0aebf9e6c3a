"""Processes the harness starts, and what /proc says about them (CPU time, RSS).

Every process the harness starts is registered here and torn down by pid (SIGTERM, then
SIGKILL after a grace period); nothing is killed by name. Worker processes the gateway
spawned are tracked as the gateway's descendants while it runs, so a gateway that dies
without stopping them still has them cleaned up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            raw = handle.read()
    except OSError:
        return None
    # comm may contain spaces; fields after the last ')' start at index 2 (state)
    return raw.rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if _stat(current) is None:
            continue
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of ``pids`` (live ones), in seconds."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ProcessSet:
    """The processes this harness started; ``close`` ends them all, by pid."""

    def __init__(self):
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._extra: dict[int, str] = {}  # pid -> start time (guards against pid reuse)

    def start(self, label: str, argv: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, **kwargs)
        self._procs.append((label, proc))
        return proc

    def adopt_descendants(self, proc: subprocess.Popen) -> None:
        """Remember ``proc``'s current descendants (e.g. gateway workers) for teardown."""
        for pid in descendants(proc.pid):
            if pid != proc.pid:
                self._extra[pid] = _starttime(pid)

    def stop(self, proc: subprocess.Popen, grace: float = 10.0) -> None:
        below = [p for p in descendants(proc.pid) if p != proc.pid]
        for pid in below:
            self._extra.setdefault(pid, _starttime(pid))
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._procs = [(l, p) for l, p in self._procs if p is not proc]
        self._reap_extra(below)

    def _reap_extra(self, pids: list[int]) -> None:
        deadline = time.monotonic() + 3
        for pid in pids:
            started = self._extra.get(pid)
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid) and started is not None and _starttime(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self._extra.pop(pid, None)

    def close(self) -> None:
        for _, proc in list(reversed(self._procs)):
            try:
                self.stop(proc, grace=5.0)
            except Exception:
                pass
        self._reap_extra(list(self._extra))


def _starttime(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields is not None else None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"
