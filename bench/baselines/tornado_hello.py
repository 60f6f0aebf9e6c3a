"""The plain Tornado baseline: the same endpoints as the benchmark handlers, in-process.

GET /hello answers the hello JSON; POST /echo answers the body's exact bytes with the
request's content type. One process per invocation; run two with ``--port <same>``
(each binds its own SO_REUSEPORT socket) for the two-process baseline.
Prints ``PORT <n>`` once listening; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from tornado import httpserver, netutil, web


class Hello(web.RequestHandler):
    def get(self) -> None:
        self.write({"message": "Hello, World!", "path": self.request.path,
                    "method": self.request.method})


class Echo(web.RequestHandler):
    def post(self) -> None:
        self.set_header("Content-Type", self.request.headers.get(
            "Content-Type", "application/octet-stream"))
        self.finish(self.request.body)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    app = web.Application([(r"/hello", Hello), (r"/echo", Echo)])
    sockets = netutil.bind_sockets(args.port, address=args.host, reuse_port=True)
    server = httpserver.HTTPServer(app, max_body_size=64 * 1024 * 1024)
    server.add_sockets(sockets)
    print(f"PORT {sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
