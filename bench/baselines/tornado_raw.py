"""Tornado's ceiling: the same endpoints as tornado_hello.py on a bare HTTPServer delegate.

No ``Application``, no ``RequestHandler``: an ``HTTPServerConnectionDelegate`` whose message
delegate answers ``GET /hello`` and ``POST /echo`` with one ``write_headers`` call. This is
about as fast as a Python server on Tornado's HTTP/1.1 code can be, so it bounds what the
data plane (which is built the same way, plus a worker hop) can reach.
``--uvloop`` runs it on uvloop. Prints ``PORT <n>`` once listening; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from tornado import httpserver, httputil, netutil


class Exchange(httputil.HTTPMessageDelegate):
    def __init__(self, conn):
        self.conn = conn
        self.chunks: list[bytes] = []

    def headers_received(self, start_line, headers) -> None:
        self.start_line = start_line
        self.headers = headers

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        method, path = self.start_line.method, self.start_line.path.partition("?")[0]
        if path == "/hello" and method == "GET":
            status, ctype = 200, "application/json"
            body = json.dumps({"message": "Hello, World!", "path": path,
                               "method": method}).encode()
        elif path == "/echo" and method == "POST":
            status = 200
            ctype = self.headers.get("Content-Type", "application/octet-stream")
            body = b"".join(self.chunks)
        else:
            status, ctype, body = 404, "text/plain", b"not found"
        headers = httputil.HTTPHeaders({"Content-Type": ctype,
                                        "Content-Length": str(len(body))})
        self.conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", status, "OK"), headers,
                                body)
        self.conn.finish()


class Delegate(httputil.HTTPServerConnectionDelegate):
    def start_request(self, server_conn, request_conn) -> Exchange:
        return Exchange(request_conn)


async def main(port: int, host: str) -> None:
    sockets = netutil.bind_sockets(port, address=host, reuse_port=True)
    server = httpserver.HTTPServer(Delegate(), max_body_size=64 * 1024 * 1024)
    server.add_sockets(sockets)
    print(f"PORT {sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop
        uvloop.run(main(args.port, args.host))
    else:
        asyncio.run(main(args.port, args.host))
    sys.exit(0)
