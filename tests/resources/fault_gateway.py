"""A gateway process for the fault tests: a supervisor and a data plane, nothing else.

``python fault_gateway.py CONFIG_JSON`` where the config holds ``endpoints`` (each with
``name``, ``method``, ``path``, ``argv`` and optional ``timeout``, ``workers``, ``limits``
and ``env``) and ``user`` ([uid, gid] or null). Prints ``READY <port>`` once every endpoint
serves; SIGTERM drains and exits 0.
"""

import asyncio
import json
import signal
import sys

from tornado import netutil

from edgebook.gateway.dataplane import make_dataplane_app, serve_dataplane
from edgebook.gateway.pool import EndpointConfig
from edgebook.sandbox import Limits, Sandbox, SandboxUser
from edgebook.gateway.supervisor import Supervisor


async def main(config: dict) -> int:
    user = SandboxUser(*config["user"]) if config.get("user") else None
    supervisor = Supervisor(sandbox=Sandbox(user))
    for spec in config["endpoints"]:
        endpoint = EndpointConfig(
            name=spec["name"], method=spec["method"], path=spec["path"],
            workers=spec.get("workers", 1), timeout=spec.get("timeout", 5.0),
            env=spec.get("env", {}), limits=Limits(**spec.get("limits", {})),
            drain_timeout=5.0)
        await supervisor.deploy(endpoint, spec["argv"], "1")
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    server = serve_dataplane(make_dataplane_app(supervisor, log_function=lambda h: None),
                             sockets=sockets)
    port = sockets[0].getsockname()[1]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"READY {port}", flush=True)
    await stop.wait()
    server.stop()
    await supervisor.shutdown(drain_timeout=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
