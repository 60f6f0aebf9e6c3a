"""The fault battery: real Rust handlers that misbehave, one way each, against a gateway
process, while a steady endpoint beside them is under load.

Each case checks the status DESIGN.md's failure table promises, how long the client waited,
whether the worker was replaced, and that the next request succeeds. The last tests check
the steady endpoint saw no error and the gateway's memory stayed flat.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from fault_helpers import (GatewayProcess, SteadyLoad, build_handlers, free_uid, processes_of,
                           rss_kib)

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")

MiB = 1024 * 1024
TIMEOUT = 1.0  # the fault endpoints' request timeout
LIMITS = {"address_space": 256 * MiB, "open_files": 64, "processes": 32,
          "file_size": 8 * MiB}
RESULTS: list[tuple] = []


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    binaries = build_handlers(tmp_path_factory.mktemp("fault-build"),
                              ("handlers/faults.rs", "handlers/faults_raw.rs",
                               "hello_handler.rs"))
    uid = free_uid()
    fault_dir = Path(tempfile.mkdtemp(prefix="edgebook-faults-"))  # reachable by the uid
    if uid is not None:
        os.chown(fault_dir, uid, uid)
    endpoints = [
        {"name": "faults", "method": "GET", "path": "/faults/{mode}",
         "argv": [binaries["handlers/faults.rs"]], "timeout": TIMEOUT, "limits": LIMITS,
         "env": {"FAULT_DIR": str(fault_dir)}},
        {"name": "raw", "method": "GET", "path": "/raw/{mode}",
         "argv": [binaries["handlers/faults_raw.rs"]], "timeout": TIMEOUT},
        {"name": "steady", "method": "GET", "path": "/steady",
         "argv": [binaries["hello_handler.rs"]], "workers": 2},
    ]
    gateway = GatewayProcess(endpoints, (uid, uid) if uid is not None else None)
    try:
        for _ in range(200):  # warm up before the memory baseline
            gateway.get("/steady")
        gateway.rss_before = rss_kib(gateway.pid)
        gateway.uid = uid
        gateway.fault_dir = fault_dir
        with SteadyLoad(gateway.port, "/steady") as load:
            gateway.load = load
            yield gateway
    finally:
        gateway.stop()
        shutil.rmtree(fault_dir, ignore_errors=True)
        if RESULTS:
            print("\nscenario | status | client waited | recovery | worker replaced")
            for row in RESULTS:
                print(" | ".join(str(c) for c in row))


# (path of the fault, path that arms it first or None, status, error_type, seconds, replaced)
CASES = [
    ("/faults/panic", None, 500, None, 0.5, False),
    ("/faults/exit", None, 502, "worker_crashed", 0.5, True),
    ("/faults/hang", None, 504, "timeout", TIMEOUT + 0.5, True),
    ("/faults/spin", None, 504, "timeout", TIMEOUT + 0.5, True),
    ("/faults/stdout_spam", None, 200, None, 5.0, False),
    ("/faults/stderr_flood", None, 200, None, 5.0, False),
    ("/faults/alloc_bomb", None, 502, "worker_crashed", 5.0, True),  # a crash, not a timeout
    ("/faults/fd_bomb", None, 200, None, 0.5, False),
    ("/faults/file_bomb", None, 502, "worker_crashed", 5.0, True),
    ("/raw/malformed", None, 502, "bad_worker_response", 0.5, True),
    ("/raw/wrong_id", None, 502, "bad_worker_response", 0.5, True),
    ("/raw/duplicate", None, 200, None, 0.5, True),
    ("/raw/oversized", None, 502, "bad_worker_response", 0.5, True),
    ("/raw/stdout_spam", None, 502, "bad_worker_response", 0.5, True),
    ("/raw/slow_drip", None, 504, "timeout", TIMEOUT + 0.5, True),
    ("/raw/next", "/raw/arm_exit_before_read", 502, "worker_crashed", 0.5, True),
    ("/raw/next", "/raw/arm_ignore_stdin", 504, "timeout", TIMEOUT + 0.5, True),
]


def _ok_path(fault: str) -> str:
    return "/faults/ok" if fault.startswith("/faults/") else "/raw/ok"


@pytest.mark.parametrize("fault,arm,status,error_type,seconds,replaced", CASES,
                         ids=[(c[1] or c[0]).rsplit("/", 1)[1] for c in CASES])
def test_fault(battery, fault, arm, status, error_type, seconds, replaced):
    before, _ = battery.wait_ok(_ok_path(fault))
    if arm is not None:
        assert battery.get(arm)[0] == 200
    got, body, waited = battery.get(fault)
    assert got == status, body
    if error_type is not None:
        assert body["error_type"] == error_type, body
        assert body["request_id"] == body["_headers"]["X-Request-Id"]
    assert waited < seconds, f"{fault} took {waited:.2f}s"
    after, recovery = battery.wait_ok(_ok_path(fault))
    assert (after["pid"] != before["pid"]) is replaced, (before, after)
    if fault == "/faults/fd_bomb":
        assert body["opened"] < LIMITS["open_files"], body
    if fault == "/faults/file_bomb":
        sizes = [f.stat().st_size for f in battery.fault_dir.iterdir()]
        assert sizes and max(sizes) <= LIMITS["file_size"], sizes
    RESULTS.append(((arm or fault), got, f"{waited * 1000:.0f} ms", f"{recovery * 1000:.0f} ms",
                    replaced))


@pytest.mark.skipif(os.geteuid() != 0, reason="RLIMIT_NPROC binds only a dropped user")
def test_fork_bomb_is_contained(battery):
    """Processes stop at the limit; the timeout kills the worker's whole group."""
    before, _ = battery.wait_ok("/faults/ok")
    baseline = len(processes_of(battery.uid))
    got, body, waited = battery.get("/faults/fork_bomb")
    assert got == 504 and body["error_type"] == "timeout", body
    after, recovery = battery.wait_ok("/faults/ok")
    assert after["pid"] != before["pid"]
    deadline = time.monotonic() + 5
    while len(processes_of(battery.uid)) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes_of(battery.uid)) <= baseline  # no bomb child survived
    RESULTS.append(("/faults/fork_bomb", got, f"{waited * 1000:.0f} ms",
                    f"{recovery * 1000:.0f} ms", True))


def test_fork_bomb_stops_at_the_process_limit(battery):
    """While the bomb runs, the sandbox user never has more than the limit."""
    if battery.uid is None:
        pytest.skip("RLIMIT_NPROC binds only a dropped user")
    import threading
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], len(processes_of(battery.uid)))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert battery.get("/faults/fork_bomb")[0] == 504
    finally:
        done.set()
        watcher.join()
    battery.wait_ok("/faults/ok")
    assert 4 < peak[0] <= LIMITS["processes"], peak[0]


def test_the_unrelated_endpoint_saw_no_error(battery):
    load = battery.load
    assert load.ok > 100, load.ok
    assert load.errors == []


def test_gateway_memory_stays_flat(battery):
    for _ in range(2):  # the battery again: growth per round would show here
        for fault, arm, *_ in CASES:
            if arm:
                battery.get(arm)
            battery.get(fault)
            battery.wait_ok(_ok_path(fault))
    after = rss_kib(battery.pid)
    delta = after - battery.rss_before
    print(f"\ngateway RSS: {battery.rss_before} KiB before, {after} KiB after "
          f"({delta:+d} KiB) over {len(CASES) * 3} faults")
    assert delta < 16 * 1024, (battery.rss_before, after)
