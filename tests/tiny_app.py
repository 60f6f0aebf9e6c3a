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

    get = head = post = put = delete = patch = _echo


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


class TimedHandler(tornado.web.RequestHandler):
    """Answers with a Server-Timing header as the gateway sends it: every 10th request
    waits ``slow_queue`` ms "for a worker" (and says so), the others 0.1 ms."""

    count = 0

    async def get(self):
        TimedHandler.count += 1
        queue = float(self.get_argument("slow_queue", "20")) if TimedHandler.count % 10 == 0 \
            else 0.1
        await asyncio.sleep(queue / 1000)  # as slow as it says
        self.set_header("Server-Timing", f'recv;dur=0.01, route;dur=0.01, queue;dur={queue}, '
                                         f'worker;dur=0.5, db;desc="db.query";dur=0.3, '
                                         f'total;dur={queue + 0.52}')
        self.write("timed")


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
        app = tornado.web.Application(self.routes())
        sock, self.port = bind_unused_port()
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        self.ready.set()
        await self.stop_event.wait()
        server.stop()
        await server.close_all_connections()

    def routes(self):
        return [
            (r"/echo.*", EchoHandler), (r"/status/(\d+)", StatusHandler),
            (r"/binary", BinaryHandler), (r"/slow", SlowHandler), (r"/chunked", ChunkedHandler),
            (r"/timed", TimedHandler),
        ]

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


class RecordingHandler(tornado.web.RequestHandler):
    """Answers anything with what it received: method, raw URI, headers."""

    def initialize(self, seen: list) -> None:
        self.seen = seen

    def _answer(self, *args) -> None:
        self.seen.append(self.request.uri)
        if self.request.uri.startswith("/api/health"):
            self.write({"ok": True})
            return
        self.set_header("Content-Type", "text/html")
        self.write(json.dumps({"uri": self.request.uri,
                               "auth": self.request.headers.get("Authorization")}))

    get = head = post = put = delete = patch = options = _answer


class RecordingGateway(TinyServer):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def routes(self):
        return [(r"/.*", RecordingHandler, {"seen": self.seen})]
