"""The admin client's background gateway: started once, reused, adopted by init."""

import gc
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from edgebook.client import AdminClient, ensure_gateway, service_test_report
from edgebook.discovery import RuntimeInfo, admin_healthy, is_loopback_url, pid_alive

from tiny_app import RecordingGateway


def test_ensure_gateway_starts_one_detached_gateway_and_reuses_it(tmp_path):
    data_dir = str(tmp_path / ".edgebook")
    first = ensure_gateway(data_dir).info
    try:
        gc.collect()  # a Popen left running would warn here (warnings are errors)
        again = ensure_gateway(data_dir).info
        assert again.pid == first.pid
        assert AdminClient(first.admin_url, first.token).health()["version"]
        # adopted by init, not a child of this process: nothing here has to reap it
        with open(f"/proc/{first.pid}/stat") as stat:
            assert int(stat.read().rsplit(")", 1)[1].split()[1]) != os.getpid()
    finally:
        os.kill(first.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(first.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not pid_alive(first.pid)


def test_a_kernels_gateway_says_where_it_is_and_exits_when_idle(tmp_path, monkeypatch):
    """What a notebook kernel does: start a gateway with an idle exit and announce it."""
    from edgebook.discovery import list_gateways
    monkeypatch.setenv("EDGEBOOK_GATEWAYS_DIR", str(tmp_path / "gateways"))
    data_dir = str(tmp_path / ".edgebook")
    lines: list[str] = []
    info = ensure_gateway(data_dir, started_by="a notebook kernel (pid 1)", idle_exit=1.5,
                          announce=lines.append).info
    try:
        assert len(lines) == 1 and str(info.pid) in lines[0] and info.url in lines[0]
        assert "edgebook stop-gateway" in lines[0] and "1.5 s" in lines[0]
        [note] = list_gateways()
        assert (note.pid, note.started_by, note.idle_exit) == (info.pid, "a notebook kernel "
                                                               "(pid 1)", 1.5)
        deadline = time.monotonic() + 30
        while pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(info.pid)
        assert list_gateways() == []
    finally:
        if pid_alive(info.pid):
            os.kill(info.pid, signal.SIGTERM)


def test_a_kernel_passes_its_idle_exit(monkeypatch):
    from edgebook.notebook.session import KERNEL_IDLE_EXIT, kernel_idle_exit
    monkeypatch.delenv("EDGEBOOK_IDLE_EXIT", raising=False)
    assert kernel_idle_exit() == KERNEL_IDLE_EXIT
    monkeypatch.setenv("EDGEBOOK_IDLE_EXIT", "0")
    assert kernel_idle_exit() is None
    monkeypatch.setenv("EDGEBOOK_IDLE_EXIT", "90")
    assert kernel_idle_exit() == 90.0


def test_a_gateway_started_for_a_kernel_ends_soon_after_the_kernel(tmp_path, monkeypatch):
    """A notebook run (nbclient, nbval) ends its kernel: the gateway that kernel started
    must not stay for the whole idle exit."""
    monkeypatch.setenv("EDGEBOOK_GATEWAYS_DIR", str(tmp_path / "gateways"))
    monkeypatch.setenv("EDGEBOOK_OWNERLESS_IDLE", "1")
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    lines: list[str] = []
    info = None
    try:
        info = ensure_gateway(str(tmp_path / ".edgebook"), idle_exit=3600,
                              owner_pid=kernel.pid, announce=lines.append).info
        assert f"process {kernel.pid}" in lines[0]
        time.sleep(2.5)
        assert pid_alive(info.pid)  # idle, but the kernel lives: it stays
        kernel.kill()
        kernel.wait()
        deadline = time.monotonic() + 30
        while pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(info.pid)
        log = (tmp_path / ".edgebook" / "logs" / "gateway.log").read_text()
        assert f"the process it served (pid {kernel.pid}) has ended" in log
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait()
        if info is not None and pid_alive(info.pid):
            os.kill(info.pid, signal.SIGTERM)


def test_loopback_admin_urls_never_go_through_http_proxy(monkeypatch):
    with socket.socket() as proxy, RecordingGateway() as admin:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(8)
        proxy.setblocking(False)
        for name in ("http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.getsockname()[1]}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        assert urllib.request.getproxies()["http"]  # urllib itself would use it
        client = AdminClient(admin.url, "the-token", timeout=2)
        assert client.request("GET", "/api/endpoints") == {
            "uri": "/api/endpoints", "auth": "Bearer the-token"}
        info = RuntimeInfo(url=admin.url, admin_url=admin.url, token="the-token", pid=1,
                           version="0", started=0.0)
        assert admin_healthy(info)
        try:
            proxy.accept()[0].close()
            reached = True
        except BlockingIOError:
            reached = False
        assert not reached  # the proxy never saw the token


def test_loopback_urls():
    for url in ("http://127.0.0.1:1", "http://localhost/x", "http://[::1]:8/", "http://127.3.2.1"):
        assert is_loopback_url(url), url
    for url in ("http://example.com", "http://10.0.0.1", "http://localhost.example.com"):
        assert not is_loopback_url(url), url


def test_a_service_test_reads_the_same_in_the_cli_and_the_notebook():
    assert service_test_report("db", {"ok": True, "latency_ms": 1.234}) == ["db: ok (1.2 ms)"]
    down = {"ok": False, "error": {"message": "cannot connect to 127.0.0.1:1",
                                   "detail": "Connection refused"}}
    assert service_test_report("db", down) == [
        "db: not reachable: cannot connect to 127.0.0.1:1", "  cause: Connection refused"]
