"""How workers start through the sandbox: a uid of their own per endpoint when the gateway
is root, and what one endpoint's workers can do to another's. Workers here are small shell
programs started exactly as the supervisor starts a handler binary (``wrap_worker``)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from worker_script import readable_tree

from edgebook.sandbox import (DEFAULT_WORKER_UIDS, EndpointUsers, Limits, Sandbox,
                              SandboxError)

AS_ROOT = os.geteuid() == 0
ROOT = Path(__file__).resolve().parent.parent
NOBODY = pwd.getpwnam("nobody")
root_only = pytest.mark.skipif(not AS_ROOT, reason="other uids exist only for a root gateway")


@pytest.fixture
def scratch():
    """A directory only root may enter, as the data dir with the binaries is."""
    path = Path(tempfile.mkdtemp(prefix="edgebook-workers-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _program(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)  # a script is read again through /dev/fd (a binary needs no mode)
    return str(path)


def test_an_endpoint_keeps_its_uid_and_collisions_move_to_the_next_free_one():
    first = EndpointUsers(61184, 65519, taken=lambda uid: False)
    again = EndpointUsers(61184, 65519, taken=lambda uid: False)
    users = {name: first.user_for(name) for name in ("hello", "users", "orders")}
    assert users["hello"] == again.user_for("hello")  # the same after a restart
    assert len({user.uid for user in users.values()}) == 3
    assert all(61184 <= user.uid <= 65519 and user.gid == user.uid for user in users.values())
    # a uid held by the system (an account or group) or by another endpoint is skipped
    held = users["hello"].uid
    shifted = EndpointUsers(61184, 65519, taken=lambda uid: uid == held).user_for("hello")
    assert shifted.uid == (held + 1 if held < 65519 else 61184)
    tiny = EndpointUsers(100, 101, taken=lambda uid: False)
    assert {tiny.user_for("a").uid, tiny.user_for("b").uid} == {100, 101}
    with pytest.raises(SandboxError, match="no free uid"):
        tiny.user_for("c")


def test_the_uid_range_is_configurable(monkeypatch):
    with pytest.raises(SandboxError, match="bad worker uid range"):
        EndpointUsers.parse("lots")
    with pytest.raises(SandboxError, match="bad worker uid range"):
        EndpointUsers.parse("0-10")
    assert EndpointUsers.parse(DEFAULT_WORKER_UIDS).first == 61184
    if AS_ROOT:
        monkeypatch.delenv("EDGEBOOK_WORKER_USER", raising=False)
        monkeypatch.setenv("EDGEBOOK_WORKER_UIDS", "70000-70009")
        assert 70000 <= Sandbox.default().user_for("x").uid <= 70009
        monkeypatch.setenv("EDGEBOOK_WORKER_USER", "nobody")
        assert Sandbox.default().user_for("x").name == "nobody"  # one shared user, as asked


@root_only
def test_workers_of_two_endpoints_cannot_signal_each_other(scratch, monkeypatch):
    monkeypatch.delenv("EDGEBOOK_WORKER_USER", raising=False)
    sandbox = Sandbox.default()
    home = tempfile.mkdtemp(prefix="edgebook-home-")
    sandbox.give(home)
    victim = subprocess.Popen(
        sandbox.wrap_worker([_program(scratch, "victim", "read line\n")], Limits(),
                            endpoint="victim", home=home),
        stdin=subprocess.PIPE, env={"PATH": os.defpath, "HOME": home})
    try:
        done = subprocess.run(sandbox.wrap_worker(
            [_program(scratch, "attacker", f"kill -9 {victim.pid} && echo KILLED\n"
                                           "id -u; echo ok > $HOME/mine && echo home-writable\n")],
            Limits(), endpoint="attacker", home=home), capture_output=True, text=True,
            timeout=30, env={"PATH": os.defpath, "HOME": home})
        assert "KILLED" not in done.stdout, done.stdout
        assert victim.poll() is None
        assert int(done.stdout.split()[0]) == sandbox.user_for("attacker").uid
        assert sandbox.user_for("attacker").uid != sandbox.user_for("victim").uid
        assert "home-writable" in done.stdout, done.stderr  # the binary in a 0700 dir ran too
    finally:
        victim.stdin.close()
        victim.wait(10)
        shutil.rmtree(home, ignore_errors=True)


@root_only
def test_each_endpoint_has_its_own_process_budget(scratch, monkeypatch):
    """With one shared user, one endpoint at its ``processes`` limit stopped every other
    endpoint's workers from starting anything."""
    monkeypatch.delenv("EDGEBOOK_WORKER_USER", raising=False)
    sandbox = Sandbox.default()
    limits = Limits(processes=4)
    hog = subprocess.Popen(sandbox.wrap_worker([_program(scratch, "hog", (
        "sleep 60 >&- & a=$!; sleep 60 >&- & b=$!; sleep 60 >&- & c=$!\n"  # 4 with the shell
        "echo started\nread line\nkill $a $b $c\n"))], limits, endpoint="hog"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={"PATH": os.defpath})
    try:
        assert hog.stdout.readline() == "started\n"
        done = subprocess.run(sandbox.wrap_worker([_program(scratch, "other", (
            "sleep 0 && sleep 0 && echo forked\n"))], limits, endpoint="other"),
            capture_output=True, text=True, timeout=30, env={"PATH": os.defpath})
        assert done.stdout == "forked\n", done.stderr
    finally:
        hog.stdin.close()
        hog.wait(10)
        hog.stdout.close()


def _probe_as(user: str) -> dict:
    """Runs tests/resources/worker_view_probe.py as ``user`` ("self" or "nobody")."""
    base = Path(tempfile.mkdtemp(prefix="edgebook-view-"))
    readable = readable_tree()  # the checkout may be out of nobody's reach
    command = ["/usr/bin/python3", os.path.join(readable, "resources", "worker_view_probe.py"),
               str(base)]
    if user == "nobody":
        os.chown(base, NOBODY.pw_uid, NOBODY.pw_gid)
        command = ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                   "--clear-groups", *command]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              env={"PATH": os.defpath, "PYTHONPATH": readable}, cwd="/")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("user", ["self", "nobody"] if AS_ROOT else ["self"])
def test_a_worker_cannot_reach_the_data_dir(user):
    """The default non-root setup (Jupyter, Binder): workers run as the gateway's own user,
    who owns the data dir; as root they have a uid of their own. Either way the data dir is
    covered in the worker's view, /proc shows only the worker's own processes, nothing
    persistent is writable, and HOME is a private empty directory."""
    seen = _probe_as(user)
    if not seen["view"]:
        pytest.skip("this machine allows no mount and PID namespaces")
    out = seen["stdout"]
    assert seen["status"] == 0 and "done" in out, seen
    for escape in ("READ-TOKEN", "READ-REGISTRY", "READ-THROUGH-PROC", "PLANTED-IN-DATA-DIR",
                   "WROTE-OUTSIDE", "SEES-THE-GATEWAY"):
        assert escape not in out, seen
    assert not seen["planted"]
    assert "home-writable" in out and "home=. .. file" in out, seen
    caps = [line for line in out.splitlines() if line.startswith("Cap")]
    assert len(caps) == 4 and all(line.endswith("0000000000000000") for line in caps), seen


RELOADED = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"revision": "VERSION"}))
}

handler_loop!(handle);
"""


@root_only
@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo to build the handler")
def test_a_reload_over_the_endpoints_budget_is_refused_before_it_starts(tmp_path, monkeypatch):
    """An endpoint's own uid holds its old workers until the new ones are ready: a reload
    that cannot fit is refused with the numbers (it used to fail to start, blaming "your
    user" and ulimit), and one that fits goes through."""
    import urllib.request

    from test_cli import Server

    from edgebook.client import AdminClient, AdminError

    monkeypatch.delenv("EDGEBOOK_WORKER_USER", raising=False)
    server = Server(tmp_path / ".edgebook")
    try:
        client = AdminClient(server.info.admin_url, server.info.token)

        def deploy(version: str, workers: int) -> dict:
            return client.request("PUT", "/api/endpoints/budget", {
                "method": "GET", "path": "/budget", "deps": [], "workers": workers,
                "limit_processes": 3, "source": RELOADED.replace("VERSION", version)})

        def served() -> str:
            with urllib.request.urlopen(f"{server.info.url}/budget", timeout=30) as response:
                return json.loads(response.read())["revision"]

        deploy("one", 2)
        assert served() == "one"
        with pytest.raises(AdminError) as refused:
            deploy("two", 3)  # 3 new beside 2 old: 5 > 3
        assert refused.value.status == 400 and refused.value.error_type == "over_process_limit"
        assert "needs 5" in str(refused.value) and "revision it replaces" in str(refused.value)
        assert served() == "one"
        deploy("three", 1)  # 1 new beside 2 old: fits
        assert served() == "three"
    finally:
        server.terminate()
