"""Processes a test run started that are still running when it ends.

A run sets ``EDGEBOOK_TEST_SESSION`` to a fresh value; everything it starts inherits it
(gateways, followers, kernels, Jupyter servers; workers carry no environment of ours but
die with their gateway). ``report(mark)`` waits briefly for processes already shutting
down, then names and kills the rest and returns True if there were any. pytest calls it at
the end of its run (conftest.py); ``make test-ui`` runs this file after the browser tests:

    python tests/lingering.py MARK
"""

from __future__ import annotations

import os
import signal
import sys
import time

GRACE = 10.0  # seconds for processes that are already shutting down


def marked_processes(mark: str) -> dict[int, str]:
    """Processes other than this one whose environment carries ``mark``."""
    needle = f"EDGEBOOK_TEST_SESSION={mark}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle not in handle.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat", "rb") as handle:
                if handle.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # exited, waiting for its parent
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found[int(entry)] = cmdline
    return found


def report(mark: str, grace: float = GRACE) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    deadline = time.monotonic() + grace
    left = marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked_processes(mark)
    if not left:
        return False
    print("\n\nprocesses started by this test run were still running at its end:")
    for pid, cmdline in sorted(left.items()):
        print(f"  pid {pid}: {cmdline[:200]}")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return True


if __name__ == "__main__":
    sys.exit(1 if report(sys.argv[1]) else 0)
