"""What a malicious build script can reach: each escape tried by a fake cargo that the real
build service starts through the launcher, in the view a build gets."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from worker_script import readable_tree

from edgebook.build.builder import Builder, BuildRequest
from edgebook.discovery import RuntimeInfo, write_runtime
from edgebook.sandbox import Sandbox, SandboxError, describe_isolation, isolation_report

AS_ROOT = os.geteuid() == 0
SOURCE = "fn handle(req: Request) -> Response { Response::ok(json!({})) }\n"


@pytest.fixture(scope="module")
def confining():
    if not Sandbox().can_confine():
        pytest.skip("this machine allows no mount and PID namespaces")


def _run_build(tmp_path: Path, script: str, **builder_options) -> str:
    """Runs ``script`` as cargo would run a build script; returns what it printed."""
    data_dir = tmp_path / "dd"
    write_runtime(str(data_dir), RuntimeInfo(url="u", admin_url="a", token="admin-secret",
                                             pid=os.getpid(), version="0", started=0.0))
    target = tmp_path / "target"
    target.mkdir()
    fake_cargo = tmp_path / "cargo"
    fake_cargo.write_text(f"#!/bin/sh\nexec > {target}/report 2>&1\n{script}\nexit 1\n")
    fake_cargo.chmod(0o755)
    builder = Builder(data_dir, cargo=str(fake_cargo), target_dir=target,
                      offline_first=False, **builder_options)
    result = asyncio.run(builder.build(BuildRequest(name="evil", source=SOURCE)))
    assert not result.ok
    return (target / "report").read_text()


def test_the_gateway_is_not_reachable_through_proc(tmp_path, confining):
    """/proc/<gateway pid>/root is the gateway's own view, where nothing is covered."""
    runtime = tmp_path / "dd" / "runtime.json"
    report = _run_build(tmp_path, (
        f"grep -q admin /proc/{os.getpid()}/root{runtime} && echo READ-THROUGH-PROC\n"
        f"ls /proc | grep -cE '^[0-9]+$' | sed 's/^/processes=/'\n"
        "kill -0 1 2>/dev/null; echo init-reachable=$?\n"), sandbox=Sandbox())
    assert "admin-secret" not in report and "READ-THROUGH-PROC" not in report, report
    processes = int(report.split("processes=")[1].split()[0])
    assert processes <= 6, report  # init, the shell, ls, grep, sed: nobody else's


def test_a_build_has_no_capability_to_undo_its_view(tmp_path, confining):
    """As root with no build user cargo used to keep every capability: it could unmount the
    cover on the runtime file or remount / read-write."""
    runtime = tmp_path / "dd" / "runtime.json"
    outside = tmp_path / "outside"
    report = _run_build(tmp_path, (
        "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status\n"
        f"umount {runtime} 2>&1; grep -q admin {runtime} && echo READ-AFTER-UMOUNT\n"
        f"mount -o remount,rw / 2>&1; touch {outside} && echo WROTE-AFTER-REMOUNT\n"
        "unshare -U -r -m sh -c "
        f"'umount {runtime}; grep -q admin {runtime} && echo READ-IN-NESTED-NAMESPACE' 2>&1\n"
        "echo > /proc/sys/kernel/core_pattern && echo WROTE-SYSCTL\n"), sandbox=Sandbox())
    caps = [line for line in report.splitlines() if line.startswith("Cap")]
    assert len(caps) == 5 and all(line.endswith("0000000000000000") for line in caps), report
    for escape in ("admin-secret", "READ-AFTER-UMOUNT", "WROTE-AFTER-REMOUNT",
                   "READ-IN-NESTED-NAMESPACE", "WROTE-SYSCTL"):
        assert escape not in report, report
    assert not outside.exists()


def test_only_the_registry_and_git_caches_of_cargo_home_are_writable(tmp_path, monkeypatch,
                                                                     confining):
    cargo_home = tmp_path / "cargo-home"
    (cargo_home / "bin").mkdir(parents=True)
    (cargo_home / "config.toml").write_text("")
    monkeypatch.setenv("CARGO_HOME", str(cargo_home))
    report = _run_build(tmp_path, (
        f"touch {cargo_home}/bin/cargo-evil && echo PLANTED-BIN\n"
        f"echo '[build]' >> {cargo_home}/config.toml && echo CHANGED-CONFIG\n"
        f"touch {cargo_home}/evil.toml && echo PLANTED-HOME\n"
        f"touch {cargo_home}/registry/crate && echo registry-writable\n"
        f"touch {cargo_home}/git/checkout && echo git-writable\n"), sandbox=Sandbox())
    assert "PLANTED-BIN" not in report and "CHANGED-CONFIG" not in report, report
    assert "PLANTED-HOME" not in report, report
    assert "registry-writable" in report and "git-writable" in report, report
    assert (cargo_home / "config.toml").read_text() == ""


def test_isolation_says_so_when_no_view_can_be_made(monkeypatch):
    """Without namespaces (a container's default profile; macOS) builds and workers run
    unconfined: the report says so, and EDGEBOOK_REQUIRE_ISOLATION refuses instead."""
    without = Sandbox(portable=True)  # this launcher makes no namespaces
    report = isolation_report(without, without)
    assert report["unconfined"] == ["workers", "builds"]
    assert report["builds"]["file_view"] is False and report["builds"]["unconfined_reason"]
    assert "UNCONFINED" in describe_isolation(report)
    assert without.wrap(["/bin/true"], None, hide=["/etc"])  # runs, unconfined
    monkeypatch.setenv("EDGEBOOK_REQUIRE_ISOLATION", "1")
    with pytest.raises(SandboxError, match="no private file-system view"):
        Sandbox(portable=True).wrap(["/bin/true"], None, hide=["/etc"])


def test_isolation_reports_the_view_where_there_is_one(confining):
    report = isolation_report(Sandbox(), Sandbox())
    assert report["unconfined"] == []
    assert report["builds"]["file_view"] and report["builds"]["pid_namespace"]
    # workers that share an unprivileged gateway's user (Sandbox()) get one too
    assert report["workers"]["pid_namespace"] is (not AS_ROOT)
    assert report["builds"]["capabilities"] == "none"
    assert "UNCONFINED" not in describe_isolation(report)


@pytest.mark.skipif(not AS_ROOT, reason="only a root build could pass for root at a socket")
def test_a_root_build_cannot_reach_a_daemon_that_trusts_root(tmp_path, confining):
    """Read-only mounts do not stop connect(): systemd's private socket, D-Bus or Docker
    would take a capability-less root build for root."""
    directory = Path(tempfile.mkdtemp(prefix="edgebook-test-", dir="/run"))
    path = directory / "daemon.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        server.listen(1)
        report = _run_build(tmp_path, (
            "/usr/bin/python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); "
            f"s.connect('{path}'); print('CONNECTED')\" 2>&1 | tail -1\n"), sandbox=Sandbox())
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)
    assert "CONNECTED" not in report, report
    assert "Connection refused" in report or "not a socket" in report.lower(), report


@pytest.mark.skipif(not AS_ROOT, reason="plays an unprivileged gateway as another user")
def test_the_build_view_holds_for_an_unprivileged_gateway(confining):
    """The same escapes as an unprivileged gateway's build would try them: the launcher
    then makes a user namespace, in which the build would hold every capability."""
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="edgebook-unprivileged-"))
    try:
        launcher = Sandbox(cache_dir=base / "launcher").launcher()  # root's, 0755
        (base / "launcher").chmod(0o755)
        base.chmod(0o755)
        data, target, cargo_home = base / "dd", base / "target", base / "cargo-home"
        for path in (data, target, cargo_home / "bin", cargo_home / "registry"):
            path.mkdir(parents=True)
        data.chmod(0o700)
        runtime = data / "runtime.json"
        runtime.write_text("admin-secret")
        for path in (data, runtime, target, cargo_home, cargo_home / "bin",
                     cargo_home / "registry"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        probe = (
            f"grep -q admin {runtime} && echo READ-TOKEN\n"
            f"grep -q admin /proc/$GATEWAY/root{runtime} && echo READ-THROUGH-PROC\n"
            f"umount {runtime} 2>/dev/null; grep -q admin {runtime} && echo READ-AFTER-UMOUNT\n"
            f"unshare -U -r -m sh -c 'umount {runtime}; grep -q admin {runtime} && "
            "echo READ-IN-NESTED-NAMESPACE' 2>/dev/null\n"
            f"touch {cargo_home}/bin/cargo-evil 2>/dev/null && echo PLANTED-BIN\n"
            f"touch {cargo_home}/registry/crate && echo registry-writable\n"
            "kill -0 $GATEWAY 2>/dev/null && echo SEES-THE-GATEWAY\n"
            "grep CapEff /proc/self/status\n")
        done = subprocess.run(
            ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
             "--clear-groups", "/bin/sh", "-c", 'export GATEWAY=$$; "$@"; :', "gateway",
             launcher, "--hide", str(runtime), "--writable", str(target), "--writable",
             str(cargo_home / "registry"), "--pid-namespace", "--", "/bin/sh", "-c", probe],
            capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    for escape in ("READ-TOKEN", "READ-THROUGH-PROC", "READ-AFTER-UMOUNT",
                   "READ-IN-NESTED-NAMESPACE", "PLANTED-BIN", "SEES-THE-GATEWAY"):
        assert escape not in done.stdout, done.stdout
    assert "registry-writable" in done.stdout and "CapEff:\t0000000000000000" in done.stdout


@pytest.mark.skipif(not AS_ROOT, reason="masks /proc in a mount namespace of its own")
def test_a_masked_proc_still_gives_builds_a_view(confining):
    """Container runtimes mask parts of /proc (Docker covers /proc/kcore and others), and
    then no fresh /proc can be mounted in a user namespace: builds still get their view,
    without the PID namespace, and the report says so (they used to fail with 126)."""
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="edgebook-masked-"))
    base.chmod(0o755)
    os.chown(base, nobody.pw_uid, nobody.pw_gid)
    snippet = (
        "import json, subprocess, sys\n"
        "from edgebook.sandbox import Sandbox\n"
        f"sandbox = Sandbox(cache_dir={str(base / 'launcher')!r})\n"
        "done = subprocess.run(sandbox.wrap(['/bin/sh', '-c', 'touch /etc/x || echo ro'],"
        " None, writable=['/tmp']), capture_output=True, text=True)\n"
        "print(json.dumps({'status': done.returncode, 'out': done.stdout, 'err': done.stderr,"
        " 'builds': sandbox.isolation('builds')}))\n")
    try:
        done = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount --bind /dev/null /proc/kallsyms && exec "$@"', "masker",
             "setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
             "--clear-groups", "/usr/bin/python3", "-c", snippet],
            capture_output=True, text=True, timeout=120, cwd="/",
            env={"PATH": os.defpath, "PYTHONPATH": readable_tree()})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["status"] == 0 and seen["out"] == "ro\n", seen
    assert seen["builds"]["file_view"] is True and seen["builds"]["pid_namespace"] is False
    assert "no PID namespace" in done.stderr
