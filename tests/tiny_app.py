"""A tiny Tornado app on its own thread and loop, standing in for a gateway's data plane."""

from __future__ import annotations

import asyncio
import json
import threading

import tornado.httpserver
import tornado.web
from tornado.testing import bind_unused_port


class EchoHandler(tornado.web.RequestHandler):
    def _echo(self):
        self.set_header("X-Request-Id", self.request.headers.get("X-Request-Id", "rid-123"))
        self.write({"method": self.request.method, "path": self.request.path,
                    "query": {k: self.get_argument(k) for k in self.request.arguments},
                    "headers": {k.lower(): v for k, v in self.request.headers.items()},
                    "body": self.request.body.decode("utf-8", "replace")})

    get = post = put = delete = patch = _echo


class StatusHandler(tornado.web.RequestHandler):
    def get(self, code):
        self.set_status(int(code))
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"error": "asked for it", "error_type": "test",
                               "request_id": "rid-status"}))


class BinaryHandler(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/octet-stream")
        self.write(bytes(range(256)))


class SlowHandler(tornado.web.RequestHandler):
    async def get(self):
        await asyncio.sleep(float(self.get_argument("s", "0.05")))
        self.write("slow")


class ChunkedHandler(tornado.web.RequestHandler):
    async def get(self):
        for part in ("a" * 10, "b" * 20):
            self.write(part)
            await self.flush()


class TinyServer:
    """Start with ``with TinyServer() as server:``; ``server.url`` is its base URL."""

    def __init__(self):
        self.loop = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        asyncio.run(self._serve())

    async def _serve(self):
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        app = tornado.web.Application([
            (r"/echo.*", EchoHandler), (r"/status/(\d+)", StatusHandler),
            (r"/binary", BinaryHandler), (r"/slow", SlowHandler), (r"/chunked", ChunkedHandler),
        ])
        sock, self.port = bind_unused_port()
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        self.ready.set()
        await self.stop_event.wait()
        server.stop()
        await server.close_all_connections()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)
