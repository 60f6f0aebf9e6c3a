"""The Jupyter server extension's supervision of its gateway, without a Jupyter server:
``GatewayProcess`` starting real ``edgebook serve`` processes."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgebook.discovery import find_live, pid_alive
from edgebook.jupyter.extension import GatewayProcess

REPO = Path(__file__).parent.parent


class Lines:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda message, *args: self.lines.append((level, message % args))


@pytest.fixture(autouse=True)
def importable(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("EDGEBOOK_GATEWAYS_DIR", str(tmp_path / "gateways"))


def test_a_gateway_that_cannot_start_is_given_up_with_its_reason(tmp_path):
    log = Lines()
    # a gateway that exits at once: its --openapi-path is refused
    gateway = GatewayProcess(str(tmp_path / "dd"), serve_args=["--openapi-path", "bad"],
                             log=log, backoff=(0.05,), max_failures=3)

    async def run():
        await gateway.start()
        await asyncio.wait_for(gateway._task, 120)
    asyncio.run(run())
    assert gateway.gave_up and gateway.restarts == 2
    assert "--openapi-path must start with '/'" in gateway.failure
    error_type, message, retry = gateway.unavailable()
    assert error_type == "gateway_failed" and retry is None
    assert "--openapi-path must start with '/'" in message
    assert not any("not ours" in line for _, line in log.lines)
    assert sum(line.startswith("edgebook: starting the gateway failed")
               for _, line in log.lines) == 3


def test_whose_gateway_died_is_told_truthfully(tmp_path):
    data_dir = str(tmp_path / "dd")
    outside = subprocess.Popen([sys.executable, "-m", "edgebook", "serve", "--data-dir",
                                data_dir, "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    log = Lines()
    gateway = GatewayProcess(data_dir, log=log, backoff=(0.05,), max_failures=2)

    async def run():
        assert "serving" in await asyncio.to_thread(outside.stdout.readline)
        await gateway.start()
        info = await gateway.wait_ready(60)
        assert info.pid == outside.pid and not gateway.owned
        outside.send_signal(signal.SIGTERM)
        await asyncio.to_thread(outside.wait, 60)
        while gateway.process is None:  # it starts one of its own
            await asyncio.sleep(0.05)
        own = await gateway.wait_ready(60)
        assert own.pid == gateway.process.pid != outside.pid
        os.kill(own.pid, signal.SIGKILL)
        while gateway.info is not None and gateway.info.pid == own.pid:
            await asyncio.sleep(0.05)
        await gateway.wait_ready(60)
        await gateway.stop()
        return own
    try:
        own = asyncio.run(run())
    finally:
        outside.stdout.close()
        if outside.poll() is None:
            outside.kill()
            outside.wait()
    warnings = [line for level, line in log.lines if level == "warning"]
    assert f"attached to (pid {outside.pid}, started outside Jupyter) exited" in warnings[0]
    assert f"this server started (pid {own.pid}) was killed by signal 9" in warnings[1]
    assert find_live(data_dir, check_health=False) is None or not pid_alive(own.pid)
