"""The data plane: HTTP requests in, worker request frames out, worker responses back.

It sits directly on Tornado's ``HTTPServer`` as an ``HTTPServerConnectionDelegate``: no
``Application``, no ``RequestHandler``, no task or future of its own per request (most of
Tornado's cost for a small request is those layers, and the data plane has its own router).
Tornado's HTTP/1.1 connection still parses and frames the messages: keep-alive, pipelined
requests answered in order, chunked bodies, ``Expect: 100-continue``, HTTP/1.0, and
refusing malformed input.

Per request (``Exchange``): the request line and headers go to the router once (404/405
before any body is read; ``HEAD`` answers like ``GET`` without the body), the endpoint's
body limit is enforced (413 from ``Content-Length`` before the body is read, or while a
chunked body streams in; nothing reaches a worker before the whole body has passed the
check), the request frame goes to the supervisor with a callback, and the worker's response
is written with one ``write_headers`` call. Gateway-made errors use the one JSON shape of
``edgebook.errors`` and always carry ``X-Request-Id``.
"""

from __future__ import annotations

import asyncio
import email.utils
import collections
import hmac
import json
import logging
import os
import re
import socket
import time
from typing import Callable
from urllib.parse import parse_qs

from tornado import httpserver, httputil, netutil
from tornado.log import access_log

from .timing import RequestTiming
from ..errors import GatewayError
from ..protocol import DEFAULT_MAX_FRAME, ProtocolError, decode_body

log = logging.getLogger(__name__)

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z").match
#: Methods the data plane routes; anything else is 405 before the router is asked.
SUPPORTED_METHODS = frozenset({"GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS"})
#: Response headers a worker may not set: the gateway frames the HTTP message itself.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                         "upgrade", "te", "trailer", "proxy-connection", "date"})
#: What a worker's response header may look like (RFC 9110 token; visible text, space and
#: tab, or Latin-1 obs-text), so nothing it sends can split or smuggle a header.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z").match
#: How much more than the limit Tornado may read (and discard) while a 413 goes out.
_BODY_SLACK = 1024 * 1024
_REASONS = httputil.responses
_NO_BODY_STATUSES = frozenset({204, 304})
#: How many answered requests per endpoint the data plane keeps with their phases.
RECENT = 50


class ResponseHeaders(dict):
    """A response's headers, canonical name -> value: everything Tornado's
    ``HTTP1Connection.write_headers`` asks of a header collection, for a fraction of what
    building an ``HTTPHeaders`` costs per response."""

    __slots__ = ()

    def get_all(self):
        return self.items()

    def add(self, name: str, value: str) -> None:
        self[name] = value  # one value per name: the last wins


class MultiResponseHeaders(ResponseHeaders):
    """Response headers where a name may repeat (``Set-Cookie``): the first value of each
    name in the dict, the others in ``extra``, all of them in ``get_all()``."""

    __slots__ = ("extra",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra: list[tuple[str, str]] = []

    def get_all(self):
        yield from self.items()
        yield from self.extra

    def add(self, name: str, value: str) -> None:
        if name in self:
            self.extra.append((name, value))
        else:
            self[name] = value


_CANONICAL: dict[str, str] = {}


def canonical_name(name: str) -> str:
    """``content-type`` -> ``Content-Type`` (cached for the names seen most)."""
    canonical = _CANONICAL.get(name)
    if canonical is None:
        canonical = "-".join(word.capitalize() for word in name.split("-"))
        if len(_CANONICAL) < 1024:  # names come from handlers: bounded
            _CANONICAL[name] = canonical
    return canonical


def new_request_id() -> str:
    """A random (version 4) UUID as text, without ``uuid.UUID``'s overhead."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class InflightCounter:
    """Counts requests between their headers and their response, so a shutdown can drain."""

    def __init__(self):
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once nothing is in flight; False if ``timeout`` seconds pass first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False


class _DateHeader:
    """The ``Date`` header value, formatted once per second, not once per response."""

    def __init__(self):
        self._second = -1
        self._value = ""

    def value(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True)
        return self._value


class DataPlane(httputil.HTTPServerConnectionDelegate):
    """What ``HTTPServer`` calls for each request: one ``Exchange`` per request.

    ``supervisor`` provides ``route(method, path, host) -> (Match, EndpointConfig)`` and
    ``dispatch(name, frame, outcome)`` (or only ``async handle(name, frame)``, as test
    doubles do); ``max_frame`` (from the supervisor when it has one) caps every
    endpoint's body limit, since a body must fit in one frame.
    """

    def __init__(self, supervisor, *, log_function: Callable[["Exchange"], None] | None = None,
                 api_document=None, api_document_path: str | None = None):
        self.supervisor = supervisor
        self.dispatch = getattr(supervisor, "dispatch", None) or _dispatch_by_handle(supervisor)
        self.inflight = InflightCounter()
        self.log_function = log_function or log_failures
        self.api_document = api_document if api_document_path else None
        self.api_document_path = api_document_path
        self.max_frame = getattr(supervisor, "max_frame", DEFAULT_MAX_FRAME)
        self.date = _DateHeader()
        #: Requests in flight by request id -> RequestTiming (the supervisor's dict, so its
        #: pools and the service calls mark the same objects).
        self.timings: dict = getattr(supervisor, "timings", None)
        if self.timings is None:
            self.timings = {}
        #: Server-Timing on every response, or (False) only on requests that present
        #: ``timing_token`` (the admin token) in ``X-Edgebook-Timing``.
        self.server_timing = False
        self.timing_token: str | None = None
        self.tracing = None  # a tracing.Tracing when OpenTelemetry is set up
        self.on_exchange: Callable[["Exchange"], None] | None = None  # every answered one
        #: The last ``RECENT`` answered requests of each endpoint with their phases, for the
        #: admin API (``/api/endpoints/{name}/requests``) and the sidebar.
        self.recent: dict[str, collections.deque] = {}

    def start_request(self, server_conn, request_conn) -> "Exchange":
        return Exchange(self, request_conn)

    def on_close(self, server_conn) -> None:
        pass


class Exchange(httputil.HTTPMessageDelegate):
    """One request and its response on one HTTP/1.x connection."""

    __slots__ = ("plane", "conn", "method", "target", "path", "query", "headers",
                 "request_id", "internal_id", "endpoint", "pattern", "params", "limit", "size",
                 "chunks", "early_error", "status", "responded", "closed", "counted", "started",
                 "read", "timing", "trace")

    def __init__(self, plane: DataPlane, conn):
        self.plane = plane
        self.conn = conn
        self.timing: RequestTiming | None = None
        self.trace = None
        self.method = ""
        self.target = ""
        self.path = ""
        self.request_id = ""
        self.endpoint = ""
        self.pattern = ""
        self.internal_id = ""
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = 0
        self.early_error: GatewayError | None = None
        self.status = 0
        self.responded = False  # the response is written (or being written)
        self.closed = False  # the client went away
        self.counted = False
        self.read = False  # the whole request (body included) is read

    # -- what Tornado's connection calls ---------------------------------------------

    def headers_received(self, start_line, headers) -> None:
        plane = self.plane
        self.timing = RequestTiming()
        self.started = time.monotonic()
        plane.inflight.begin()
        self.counted = True
        self.method = method = start_line.method
        self.target = target = start_line.path
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        given = headers.get("X-Request-Id")
        # The frame's id is always ours (workers, transactions and logs key by it); a
        # client's own X-Request-Id is only echoed back.
        self.internal_id = new_request_id()
        self.request_id = given if given and _SANE_REQUEST_ID(given) else self.internal_id
        try:
            if method not in SUPPORTED_METHODS:
                raise GatewayError(405, "method_not_allowed", "Method Not Allowed")
            match, config = self._route(method, headers.get("Host") or "127.0.0.1")
        except GatewayError as exc:
            if exc.status in (404, 405) and self.path == plane.api_document_path \
                    and method in ("GET", "HEAD") and plane.api_document is not None:
                self._send_api_document()  # no endpoint answers this: the document does
            elif _has_body(headers):
                self.send_gateway_error(exc)  # now; the connection closes unread
            else:
                self.early_error = exc  # after the (empty) body, keeping the connection
            return
        self.timing.mark("routed")
        self.endpoint = match.route.name
        self.pattern = match.route.path
        self.params = match.params
        self.limit = limit = min(config.max_body, plane.max_frame)
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            # Answer before reading; the connection closes once the 413 is out, so what
            # the client sends meanwhile is never buffered (nor answered with a 400).
            self.conn.set_max_body_size(int(length))
            self._too_large()
            return
        self.conn.set_max_body_size(limit + _BODY_SLACK)

    def _route(self, method: str, host: str):
        route = self.plane.supervisor.route
        try:
            return route(method, self.path, host)
        except GatewayError as exc:
            if method != "HEAD" or exc.status != 405:
                raise
            try:
                return route("GET", self.path, host)  # HEAD is GET without the body
            except GatewayError:
                raise exc from None

    def data_received(self, chunk: bytes) -> None:
        if self.responded:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.chunks = []
            self._too_large()
            return
        self.chunks.append(chunk)

    def finish(self) -> None:
        self.read = True
        timing = self.timing
        timing.mark("received")
        if self.responded:
            return
        if self.early_error is not None:
            self.send_gateway_error(self.early_error)
            return
        chunks = self.chunks
        self.chunks = []
        # Raw bytes: the worker's frame writer sends them as a binary body frame, or as
        # text or base64 to a worker that did not negotiate binary bodies.
        frame = {"type": "request", "request_id": self.internal_id, "method": self.method,
                 "path": self.path, "params": self.params,
                 "body": (chunks[0] if len(chunks) == 1 else b"".join(chunks)) if chunks
                 else None, "client_ip": self.conn.context.remote_ip}
        if self.query:
            _add_multi(frame, "query", "query_all",
                       parse_qs(self.query, keep_blank_values=True, errors="replace"))
        else:
            frame["query"] = {}
        _add_headers(frame, self.headers)
        plane = self.plane
        if plane.tracing is not None:  # the handler's traceparent names this request's span
            self.trace = plane.tracing.begin(self.method, self.pattern, self.path,
                                             self.headers)
            carried = plane.tracing.traceparent(self.trace)
            frame["headers"].update(carried)
            if "headers_all" in frame:
                frame["headers_all"].update({k: [v] for k, v in carried.items()})
        plane.timings[self.internal_id] = timing
        plane.dispatch(self.endpoint, frame, self._on_outcome)

    def on_connection_close(self) -> None:
        self.closed = True
        self._uncount()

    # -- answers ---------------------------------------------------------------------

    def _on_outcome(self, response: dict | None, error: Exception | None) -> None:
        self.timing.mark("replied")
        self.plane.timings.pop(self.internal_id, None)
        if self.closed or self.responded:
            self._uncount()
            return
        try:
            if error is None:
                self._write_response(response)
            elif isinstance(error, GatewayError):
                self.send_gateway_error(error)
            else:
                raise error
        except Exception:  # a bug here must close the connection, never hang it
            log.exception("%s %s: error writing the response", self.method, self.path)
            self._uncount()
            self.conn.close()

    def _write_response(self, response: dict) -> None:
        status = response.get("status")
        worker_headers = response.get("headers") or {}
        headers = ResponseHeaders()
        try:
            if not isinstance(status, int) or not 200 <= status <= 999:
                raise ValueError(f"status {status!r} is not an integer in 200-999")
            if not isinstance(worker_headers, dict):
                raise ValueError("headers is not an object")
            body = decode_body(response)
            pairs = response.get("headers_all")
            if pairs is None:
                pairs = worker_headers.items()
            elif not isinstance(pairs, list) or not all(
                    isinstance(p, list) and len(p) == 2 for p in pairs):
                raise ValueError("headers_all is not a list of [name, value] pairs")
            else:
                headers = MultiResponseHeaders()  # every value of a repeated header
            for name, value in pairs:
                if not isinstance(name, str) or not _HEADER_NAME(name):
                    raise ValueError(f"header name {name!r} is not an HTTP token")
                if not isinstance(value, str) or not _HEADER_VALUE(value):
                    raise ValueError(f"header {name} has a value with control or "
                                     "non-Latin-1 characters")
                if name.lower() not in _HOP_BY_HOP:
                    headers.add(canonical_name(name), value)
        except (ValueError, TypeError, ProtocolError) as exc:
            self.send_gateway_error(GatewayError(
                502, "bad_worker_response", "the endpoint's worker sent an invalid response",
                log_message=f"{self.endpoint}: invalid response: {exc}"))
            return
        headers["X-Request-Id"] = self.request_id
        if status in _NO_BODY_STATUSES:
            body = b""  # no body allowed; whatever the worker sent is dropped
        else:
            headers["Content-Length"] = str(len(body))
        self._send(status, headers, body)

    def _send_api_document(self) -> None:
        context = self.conn.context
        host = self.headers.get("Host") or "127.0.0.1"
        document = self.plane.api_document(f"{context.protocol}://{host}")
        body = json.dumps(document).encode()
        headers = ResponseHeaders({"Content-Type": "application/json",
                                   "Cache-Control": "no-store",
                                   "X-Request-Id": self.request_id,
                                   "Content-Length": str(len(body))})
        self._send(200, headers, body)

    def _too_large(self) -> None:
        self.send_gateway_error(GatewayError(
            413, "body_too_large",
            f"request body exceeds this endpoint's limit of {self.limit} bytes"))

    def send_gateway_error(self, error: GatewayError) -> None:
        """Answer with the one JSON error shape; log the detail on the gateway's side."""
        if error.status >= 500:
            log.warning("%s %s -> %d %s: %s", self.method, self.path, error.status,
                        error.error_type, error.log_message or error.message)
        elif error.log_message:
            log.info("%s %s -> %d: %s", self.method, self.path, error.status,
                     error.log_message)
        body = error.body(self.request_id)
        headers = ResponseHeaders({canonical_name(k): v for k, v in error.headers.items()})
        headers["Content-Type"] = "application/json"
        headers["X-Request-Id"] = self.request_id
        headers["Content-Length"] = str(len(body))
        self._send(error.status, headers, body)

    def _send(self, status: int, headers: ResponseHeaders, body: bytes) -> None:
        """The whole response in one write; the body is left out for HEAD."""
        self.responded = True
        self.status = status
        plane = self.plane
        timing = self.timing
        if timing is not None and (plane.server_timing or self._timing_asked()):
            headers["Server-Timing"] = timing.header()
        headers["Date"] = plane.date.value()
        if not self.read:  # answered before the body: Tornado closes after this response
            headers["Connection"] = "close"
        conn = self.conn
        conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", status,
                                                      _REASONS.get(status, "Unknown")),
                           headers, body if body and self.method != "HEAD" else None)
        conn.finish()
        self._uncount()
        if timing is not None:
            timing.mark("written")
            if self.endpoint:
                recent = plane.recent.get(self.endpoint)
                if recent is None:
                    recent = plane.recent[self.endpoint] = collections.deque(maxlen=RECENT)
                recent.append((time.time(), self.method, self.target, status,
                               self.request_id, timing))
            if self.trace is not None:
                plane.tracing.end(self.trace, timing, status, self.endpoint)
                self.trace = None
        if plane.on_exchange is not None:
            plane.on_exchange(self)
        if status >= 400:
            plane.log_function(self)

    def _timing_asked(self) -> bool:
        """The request presents the admin token in ``X-Edgebook-Timing``."""
        token = self.plane.timing_token
        given = self.headers.get("X-Edgebook-Timing") if self.headers is not None else None
        return bool(token and given) and hmac.compare_digest(given.encode(), token.encode())

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.plane.inflight.end()

    # -- for the access log ----------------------------------------------------------

    def request_summary(self) -> str:
        return f"{self.method} {self.target} ({self.conn.context.remote_ip})"

    def request_time(self) -> float:
        return time.monotonic() - self.started


def log_failures(exchange: Exchange) -> None:
    """The access log for the data plane: failed requests only (successes are counted in
    the endpoint's metrics; a log line each would cost more than the request itself)."""
    status = exchange.status
    access_log.log(logging.WARNING if status < 500 else logging.ERROR, "%d %s %.2fms",
                   status, exchange.request_summary(), 1000.0 * exchange.request_time())


def _dispatch_by_handle(supervisor):
    """``dispatch`` for a supervisor that only has ``async handle(name, frame)``."""
    tasks: set[asyncio.Task] = set()

    def dispatch(name: str, frame: dict, outcome) -> None:
        async def run():
            try:
                response = await supervisor.handle(name, frame)
            except GatewayError as exc:
                outcome(None, exc)
            else:
                outcome(response, None)

        task = asyncio.ensure_future(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return dispatch


def _has_body(headers) -> bool:
    length = headers.get("Content-Length")
    return (length is not None and length != "0") or "Transfer-Encoding" in headers


def _add_headers(frame: dict, headers) -> None:
    """``headers`` (lower-case names, last value wins) and, if a name repeats,
    ``headers_all``; one pass over Tornado's header list in the common case."""
    single = {}
    repeated = False
    for name, value in headers.get_all():
        name = name.lower()
        if name in single:
            repeated = True
        single[name] = value
    frame["headers"] = single
    if repeated:
        multi: dict[str, list[str]] = {}
        for name, value in headers.get_all():
            multi.setdefault(name.lower(), []).append(value)
        frame["headers_all"] = multi


def _add_multi(frame: dict, single: str, multi: str, items: dict[str, list[str]]) -> None:
    """Last value wins in ``single``; ``multi`` holds all values only if some key repeats."""
    frame[single] = {name: values[-1] for name, values in items.items()}
    if any(len(values) > 1 for values in items.values()):
        frame[multi] = items


def make_dataplane_app(supervisor, *, log_function=None, api_document=None,
                       api_document_path: str | None = "/openapi.json") -> DataPlane:
    """The data plane for ``supervisor``, ready for ``serve_dataplane`` (or any Tornado
    ``HTTPServer``).

    ``log_function(exchange)`` replaces the access log of failed requests (pass
    ``lambda exchange: None`` to skip it). ``api_document(base_url) -> dict``, when given,
    answers ``GET api_document_path`` with the OpenAPI document of the endpoints, but only
    when no endpoint routes that method and path: a user's route always wins.
    """
    return DataPlane(supervisor, log_function=log_function, api_document=api_document,
                     api_document_path=api_document_path)


class DataPlaneServer(httpserver.HTTPServer):
    """Tornado's HTTP server, stopping without resetting connections already made.

    Closing a listening socket resets every connection still waiting in its accept queue:
    clients that connected a moment before see "connection reset" although the gateway
    meant to serve them. ``stop`` takes those connections in first (they are served, then
    drained with the rest) and closes the socket right after, so new clients get "refused"
    and go elsewhere."""

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for fd, sock in self._sockets.items():
            self._handlers.pop(fd)()  # no more accept callbacks from the loop
            while True:
                try:
                    connection, address = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                self._handle_connection(connection, address)
            sock.close()


def serve_dataplane(app: DataPlane, host: str = "127.0.0.1", port: int = 8080, *,
                    reuse_port: bool = False, backlog: int = 1024,
                    sockets: list[socket.socket] | None = None) -> httpserver.HTTPServer:
    """Bind and start serving ``app``; returns the server (``stop()`` it to stop accepting).

    With ``reuse_port`` every process that calls this binds its own ``SO_REUSEPORT``
    socket on the same port and the kernel spreads connections across them, which is how
    multi-process mode shares the port. Pass ``sockets`` to serve already-bound sockets.
    """
    server = DataPlaneServer(app, xheaders=False, idle_connection_timeout=300)
    if sockets is None:
        sockets = netutil.bind_sockets(port, address=host, reuse_port=reuse_port,
                                       backlog=backlog)
    server.add_sockets(sockets)
    return server
