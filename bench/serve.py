"""Runs one gateway process for the benchmarks when ``edgebook serve`` is not available.

Does what ``edgebook serve --data-dir D --port 0`` does for a single process: starts a
``Gateway``, its admin API on an ephemeral loopback port, writes the runtime file (so the
ordinary ``AdminClient.from_data_dir`` finds it), and shuts down cleanly on SIGTERM.
Logging goes to stderr at WARNING (no per-request access log, like the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from tornado import httpserver, netutil

from edgebook import __version__
from edgebook.admin import make_admin_app
from edgebook.gateway import Gateway, GatewayConfig
from edgebook.runtime import new_info, remove_runtime, write_runtime


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gateway = Gateway(GatewayConfig(data_dir=args.data_dir, host=args.host, port=args.port))
    await gateway.start()
    admin_sockets = netutil.bind_sockets(0, address="127.0.0.1")
    admin = httpserver.HTTPServer(make_admin_app(gateway, gateway.token))
    admin.add_sockets(admin_sockets)
    admin_url = f"http://127.0.0.1:{admin_sockets[0].getsockname()[1]}"
    write_runtime(args.data_dir, new_info(url=gateway.url, admin_url=admin_url,
                                          token=gateway.token, data_dir=args.data_dir,
                                          version=__version__))
    print(f"URL {gateway.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    admin.stop()
    await gateway.stop()
    remove_runtime(args.data_dir)


if __name__ == "__main__":
    asyncio.run(main())
