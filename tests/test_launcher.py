"""The launcher on its own (``edgebook-launch``, compiled from ``launcher.c``): limits,
descriptors, arguments, users and the cached binary, without a gateway or cargo."""

from __future__ import annotations

import os
import pwd
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgebook.sandbox import Sandbox, SandboxError

AS_ROOT = os.geteuid() == 0
ROOT = Path(__file__).resolve().parent.parent
NOBODY = pwd.getpwnam("nobody")
#: Runs a command as an unprivileged user when the tests run as root (as CI does).
UNPRIVILEGED = (["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                 "--clear-groups"] if AS_ROOT else [])


@pytest.fixture(scope="module")
def launcher_dir():
    """Where the tests' launchers are compiled: a directory any user may enter."""
    cache = Path(tempfile.mkdtemp(prefix="edgebook-launcher-"))
    cache.chmod(0o755)
    try:
        yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="module", params=["linux", "portable"])
def launcher(request, launcher_dir):
    """The launcher as Linux builds it, and as it builds elsewhere (macOS)."""
    return Sandbox(cache_dir=launcher_dir, portable=request.param == "portable").launcher()


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kwargs)


def test_a_limit_above_the_hard_limit_is_clamped_for_an_unprivileged_gateway(launcher):
    """A gateway started under a hard NOFILE of 200 still builds (cargo asks for 4096)."""
    done = _run(["prlimit", "--nofile=200:200", *UNPRIVILEGED, launcher,
                 "--rlimit", "NOFILE=4096", "--rlimit", "FSIZE=1048576", "--",
                 "/bin/sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -f"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "200", "2048"]  # ulimit -f counts 512-byte blocks


def test_a_bad_limit_still_fails(launcher):
    done = _run([launcher, "--rlimit", "NOFILE=lots", "--", "/bin/true"])
    assert done.returncode == 2 and "bad --rlimit value" in done.stderr


def test_every_inherited_descriptor_is_closed_up_to_the_highest(launcher):
    """Even above 65535 where the hard limit allows one (the old loop stopped there)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = 70000 if hard == resource.RLIM_INFINITY else min(hard - 1, 70000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (high + 1, hard))
    read_end, write_end = os.pipe()
    try:
        os.dup2(write_end, high)
        done = _run([launcher, "--", "/bin/ls", "/proc/self/fd"],
                    pass_fds=(read_end, write_end, high))
    finally:
        for fd in (read_end, write_end, high):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert done.returncode == 0, done.stderr
    assert sorted(int(fd) for fd in done.stdout.split()) == [0, 1, 2, 3]  # 3: ls's listing


@pytest.mark.parametrize("value", ["12x", "", "-5", "0", "99999999999999999999"])
def test_a_malformed_parent_is_a_usage_error(launcher, value):
    done = _run([launcher, "--parent", value, "--", "/bin/true"])
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "bad --parent" in done.stderr


@pytest.mark.parametrize("value", ["65534", "65534:65534x", "-1:0", "4294967295:0"])
def test_a_malformed_user_is_a_usage_error(launcher, value):
    done = _run([launcher, "--user", value, "--", "/bin/true"])
    assert done.returncode == 2 and "bad --user" in done.stderr, (done.returncode, done.stderr)


def test_the_right_parent_starts_the_program(launcher):
    done = _run([launcher, "--parent", str(os.getpid()), "--", "/bin/echo", "started"])
    assert (done.returncode, done.stdout) == (0, "started\n"), done.stderr
    done = _run([launcher, "--parent", "1", "--", "/bin/true"])
    assert done.returncode == 125 and "the parent is gone" in done.stderr


@pytest.mark.skipif(not AS_ROOT, reason="changing user needs root")
def test_the_new_user_has_no_supplementary_groups(launcher):
    done = _run([launcher, "--user", f"{NOBODY.pw_uid}:{NOBODY.pw_gid}", "--",
                 "/bin/grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"])
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert fields["Uid"].split()[0] == str(NOBODY.pw_uid)
    assert fields["Gid"].split()[0] == str(NOBODY.pw_gid)
    assert fields["Groups"].strip() == ""


def test_a_cached_launcher_of_another_user_is_refused(tmp_path):
    cache = tmp_path / "cache"
    good = Path(Sandbox(cache_dir=cache).launcher())
    assert Sandbox(cache_dir=cache).launcher() == str(good)  # the cached one is reused
    good.chmod(0o777)
    with pytest.raises(SandboxError, match="others may write it"):
        Sandbox(cache_dir=cache).launcher()
    good.chmod(0o755)
    if AS_ROOT:
        os.chown(good, NOBODY.pw_uid, NOBODY.pw_gid)
        with pytest.raises(SandboxError, match="owned by uid"):
            Sandbox(cache_dir=cache).launcher()
        os.chown(good, 0, 0)
    cache.chmod(0o777)
    with pytest.raises(SandboxError, match="others may write it"):
        Sandbox(cache_dir=cache).launcher()


#: What macOS lacks (or Linux alone has): none of it may appear in a portable build.
LINUX_ONLY_NAMES = ("prctl", "unshare", "mount", "umount2", "syscall", "fexecve", "pipe2",
                    "setresuid", "setresgid", "capset", "close_range")


def test_the_portable_build_calls_nothing_only_linux_has():
    """A stand-in for compiling on macOS (not available here): the portable build's own
    code, after the preprocessor, calls none of the Linux-only functions."""
    source = ROOT / "edgebook" / "launcher.c"
    done = _run(["cc", "-E", "-DEDGEBOOK_PORTABLE", str(source)])
    assert done.returncode == 0, done.stderr
    own, current = [], ""
    for line in done.stdout.splitlines():
        if line.startswith("# "):  # a line marker: # LINE "FILE" FLAGS
            current = line.split('"')[1]
        elif current == str(source):
            own.append(line)
    code = "\n".join(own)
    assert "int main(" in code
    used = sorted(name for name in LINUX_ONLY_NAMES if re.search(rf"\b{name}\s*\(", code))
    assert used == [], used


def test_the_program_dies_with_its_parent(launcher):
    """Linux: the parent-death signal; elsewhere a watcher process that polls the parent."""
    gateway = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys\n"
        f"child = subprocess.Popen([{launcher!r}, '--parent', str(os.getpid()), '--',"
        " '/bin/sleep', '60'])\n"
        "print(child.pid, flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(gateway.stdout.readline())
    _wait_until(lambda: _argv0(pid) == "/bin/sleep", f"pid {pid} never became sleep")
    gateway.kill()
    gateway.wait()
    gateway.stdin.close()
    gateway.stdout.close()
    _wait_until(lambda: _argv0(pid) is None, f"sleep {pid} outlived its parent")


def _argv0(pid: int) -> str | None:
    """The process's argv[0]; None once it is gone (a zombie has no command line)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return argv[0].decode() if argv[0] else None


def _wait_until(condition, message: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def test_the_portable_launcher_limits_and_changes_user(launcher_dir):
    portable = Sandbox(cache_dir=launcher_dir, portable=True)
    user = ["--user", f"{NOBODY.pw_uid}:{NOBODY.pw_gid}"] if AS_ROOT else []
    done = _run([portable.launcher(), "--rlimit", "NOFILE=64", *user, "--",
                 "/bin/sh", "-c", "ulimit -n; id -u; id -G"])
    assert done.returncode == 0, done.stderr
    files, uid, groups = done.stdout.split("\n")[:3]
    assert files == "64"
    if AS_ROOT:
        assert (uid, groups) == (str(NOBODY.pw_uid), str(NOBODY.pw_gid))


def test_the_isolation_report_names_the_portable_launcher(launcher_dir, monkeypatch):
    monkeypatch.setenv("EDGEBOOK_LAUNCHER_PORTABLE", "1")
    facts = Sandbox(cache_dir=launcher_dir).isolation()
    assert facts["launcher"] == "portable" and facts["parent_death"] == "watcher process"
    assert facts["file_view"] is False and facts["no_new_privs"] is False
    assert "no private file-system view" in facts["unconfined_reason"]
    monkeypatch.delenv("EDGEBOOK_LAUNCHER_PORTABLE")
    assert Sandbox(cache_dir=launcher_dir).isolation()["launcher"] == "linux"


@pytest.mark.skipif(not AS_ROOT, reason="changing user needs root")
def test_the_launcher_takes_nothing_from_the_program_s_process_budget(launcher):
    """The portable watcher runs as the caller, forked before the limits: a worker at its
    process limit (zombies of a killed fork bomb count until reaped) still starts."""
    uid = 65000  # in the dynamic range, owned by no process
    done = _run([launcher, "--rlimit", "NPROC=1", "--user", f"{uid}:{uid}", "--",
                 "/bin/echo", "started"])
    assert (done.returncode, done.stdout) == (0, "started\n"), done.stderr
