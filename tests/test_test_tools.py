"""The two tools that end a test run: the list of skipped suites (tools/test_summary.py) and
the check that nothing a run started still runs (tests/lingering.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import lingering  # noqa: E402  (tests/ is on the path under pytest)
import test_summary  # noqa: E402


def test_the_summary_names_every_skipped_suite(tmp_path, capsys):
    report = tmp_path / "skipped.txt"
    report.write_text("test-ui: SKIPPED the browser tests: no Chromium\n\n"
                      "pytest: 4 test(s) skipped: no helm\n")
    assert test_summary.main(str(report)) == 0
    out = capsys.readouterr().out
    assert "SKIPPED" in out
    assert "  - test-ui: SKIPPED the browser tests: no Chromium" in out
    assert "  - pytest: 4 test(s) skipped: no helm" in out


def test_the_summary_says_when_nothing_was_skipped(tmp_path, capsys):
    for report in (tmp_path / "missing.txt", tmp_path / "blank.txt"):
        if report.name == "blank.txt":
            report.write_text("\n  \n")
        assert test_summary.main(str(report)) == 0
        assert capsys.readouterr().out.strip() == "make test: every suite ran; nothing was skipped."


def test_a_process_left_running_is_named_and_ended(capsys):
    mark = f"lingering-test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "EDGEBOOK_TEST_SESSION": mark}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in lingering.marked_processes(mark)
        assert bystander.pid not in lingering.marked_processes(mark)
        assert lingering.report(mark, grace=0.5) is True
        assert child.wait(10) == -9  # killed
        assert f"pid {child.pid}:" in capsys.readouterr().out
        assert bystander.poll() is None  # not ours: left alone
        assert lingering.report(mark, grace=0.1) is False  # nothing left
    finally:
        for proc in (child, bystander):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_process_that_is_ending_gets_its_grace():
    mark = f"lingering-grace-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "EDGEBOOK_TEST_SESSION": mark}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"], env=env)
    try:
        assert lingering.report(mark, grace=15) is False  # it ended within the grace
    finally:
        child.wait(10)


def test_the_suite_collects_without_cargo():
    """A machine without a Rust toolchain skips what needs one; nothing fails to import."""
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not any(os.path.exists(os.path.join(d, tool))
                                            for tool in ("cargo", "rustc")))
    # A session mark of its own: the inner run's lingering check must look only at what the
    # inner run starts, never end this run's servers.
    env = {**os.environ, "PATH": path,
           "EDGEBOOK_TEST_SESSION": f"collect-{os.getpid()}-{time.monotonic_ns()}"}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                           "no:cacheprovider", "tests"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "error" not in done.stdout.lower().split("\n")[-2], done.stdout[-500:]
    assert "tests collected" in done.stdout
