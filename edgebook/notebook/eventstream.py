"""A closeable reader of the admin API's server-sent events, for one background thread.

``EventStream(admin_url, token)`` connects and reads the ``hello`` event before returning,
so every event published after the constructor returns is seen. ``follow(callback)`` starts
a daemon thread that hands each event to ``callback``; ``close()`` (from any thread) shuts
the socket down, which ends the thread promptly.
"""

from __future__ import annotations

import http.client
import socket
import threading
from typing import Any, Callable
from urllib.parse import urlsplit

from ..sse import EventParser


class EventStreamError(ConnectionError):
    """The event stream could not be opened."""


class EventStream:
    def __init__(self, admin_url: str, token: str, *, timeout: float = 10.0):
        parts = urlsplit(admin_url)
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._parser = EventParser()
        try:
            self._conn.request("GET", (parts.path.rstrip("/") or "") + "/api/events",
                               headers={"Authorization": f"Bearer {token}",
                                        "Accept": "text/event-stream"})
            # http.client lets go of the socket once a streamed response owns it; keep it
            # so close() can shut it down and wake the reading thread.
            self._sock = self._conn.sock
            self._response = self._conn.getresponse()
            if self._response.status != 200:
                body = self._response.read(2000).decode("utf-8", "replace")
                raise EventStreamError(f"event stream answered {self._response.status}: {body}")
            self._sock.settimeout(None)  # the stream is quiet between builds
            hello = next(self._events(), None)
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise EventStreamError(f"cannot open the event stream at {admin_url}: {exc}") from exc
        self.hello: dict[str, Any] = hello or {}
        self.seq: int = int(self.hello.get("seq", 0))

    def _events(self):
        for raw in self._response:
            yield from self._parser.feed(raw)

    def follow(self, callback: Callable[[dict], None]) -> "EventStream":
        """Hand each following event to ``callback`` on a daemon thread until closed."""

        def run():
            try:
                for event in self._events():
                    if self._closed.is_set():
                        break
                    callback(event)
            except (OSError, ValueError, http.client.HTTPException):
                pass  # closed under us, or the gateway went away
            finally:
                self._conn.close()

        self._thread = threading.Thread(target=run, name="edgebook-events", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._response.close()
        self._conn.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
