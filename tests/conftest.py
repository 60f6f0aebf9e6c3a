"""Shared test helpers: the fake worker's command line."""

import os
import sys
import uuid

import pytest

import lingering
from worker_script import FAKE_WORKER


def fake_worker_argv() -> list[str]:
    """A worker command that needs no cargo: the Python fake worker."""
    return [sys.executable, FAKE_WORKER]


@pytest.fixture
def fake_worker():
    return fake_worker_argv()


# -- what was skipped, and how to run it --------------------------------------------------------

def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Every skip reason once, with its count, loud at the end of the run; ``make test``
    collects them (EDGEBOOK_SKIP_REPORT names the file) into its closing summary."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return
    terminalreporter.section("SKIPPED (install what each line names to run them)", sep="!")
    lines = [f"pytest: {count} test(s) skipped: {reason}"
             for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])]
    for line in lines:
        terminalreporter.write_line(line)
    target = os.environ.get("EDGEBOOK_SKIP_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


# -- nothing the run started outlives it --------------------------------------------------------

#: Every process this test run starts inherits the marker (gateways, followers, kernels,
#: Jupyter servers); workers carry no environment of ours but die with their gateway.
os.environ.setdefault("EDGEBOOK_TEST_SESSION", f"{os.getpid()}-{uuid.uuid4().hex}")


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a process it started is still running at the end (and end it)."""
    if hasattr(session.config, "workerinput"):
        return
    if lingering.report(os.environ["EDGEBOOK_TEST_SESSION"]):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
