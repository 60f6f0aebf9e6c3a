"""The admin client's background gateway: started once, reused, adopted by init."""

import gc
import os
import signal
import time

from edgebook.client import AdminClient, ensure_gateway
from edgebook.runtime import pid_alive


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
