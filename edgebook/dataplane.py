"""The data plane: one Tornado handler that turns HTTP requests into worker request frames.

Per request: match the route in ``prepare`` (404/405 before any body is read), enforce the
endpoint's body limit (413 from ``Content-Length`` or while the body streams in; nothing
reaches a worker before the whole body has passed the check), build the request frame, run
it through the supervisor, and write the worker's response. Gateway-made errors use the one
JSON shape of ``edgebook.errors`` and always carry ``X-Request-Id``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import uuid

from tornado import httpserver, netutil, web

from .errors import GatewayError, error_body
from .protocol import ProtocolError, decode_body, encode_body

log = logging.getLogger("edgebook.dataplane")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z").match
#: Response headers a worker may not set: the gateway frames the HTTP message itself.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                         "upgrade", "te", "trailer", "proxy-connection"})
#: What a worker's response header may look like (RFC 9110 token; visible text, space and
#: tab, or Latin-1 obs-text), so nothing it sends can split or smuggle a header.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z").match
#: How much more than the limit Tornado may read (and discard) before dropping the connection.
_BODY_SLACK = 1024 * 1024


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


@web.stream_request_body
class DataPlaneHandler(web.RequestHandler):
    """Catch-all handler: every method, every path."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, supervisor, counter, api_document=None,
                   api_document_path=None) -> None:
        self.supervisor = supervisor
        self.counter = counter
        self._counted = False
        self.api_document = api_document
        self.api_document_path = api_document_path
        self.request_id = ""
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = 0
        self._endpoint = ""
        self._params: dict[str, str] = {}
        self._early_error: GatewayError | None = None

    def set_default_headers(self) -> None:
        self.clear_header("Content-Type")  # the worker decides; errors set their own
        self.clear_header("Server")

    def compute_etag(self) -> None:
        return None  # responses are the handler's; no hashing on the hot path

    def prepare(self) -> None:
        self.counter.begin()
        self._counted = True
        request = self.request
        given = request.headers.get("X-Request-Id")
        self.request_id = given if given and _SANE_REQUEST_ID(given) else str(uuid.uuid4())
        try:
            match, config = self.supervisor.route(request.method, request.path, request.host)
        except GatewayError as exc:
            if exc.status in (404, 405) and request.path == self.api_document_path \
                    and request.method in ("GET", "HEAD") and self.api_document is not None:
                self._send_api_document()  # no endpoint answers this: the document does
                return
            if _has_body(request.headers):
                self.send_gateway_error(exc)  # now, and the connection closes unread
            else:
                self._early_error = exc  # after the (empty) body, keeping the connection
            return
        self._endpoint = match.route.name
        self._params = match.params
        self._limit = config.max_body
        length = request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self._limit:
            self._too_large()
            return
        request.connection.set_max_body_size(self._limit + _BODY_SLACK)

    def on_finish(self) -> None:
        self._uncount()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._uncount()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.counter.end()

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._size += len(chunk)
        if self._size > self._limit:
            self._chunks = []
            self._too_large()
            return
        self._chunks.append(chunk)

    def _too_large(self) -> None:
        self.send_gateway_error(GatewayError(
            413, "body_too_large",
            f"request body exceeds this endpoint's limit of {self._limit} bytes"))

    async def _forward(self) -> None:
        if self._finished:
            return
        if self._early_error is not None:
            self.send_gateway_error(self._early_error)
            return
        request = self.request
        body, encoding = encode_body(b"".join(self._chunks) if self._chunks else None)
        self._chunks = []
        frame = {"type": "request", "request_id": self.request_id, "method": request.method,
                 "path": request.path, "params": self._params, "body": body,
                 "body_encoding": encoding, "client_ip": request.remote_ip}
        if request.query:
            _add_multi(frame, "query", "query_all", _query_items(request.query_arguments))
        else:
            frame["query"] = {}
        _add_headers(frame, request.headers)
        try:
            response = await self.supervisor.handle(self._endpoint, frame)
            self._write_response(response)
        except GatewayError as exc:
            self.send_gateway_error(exc)

    get = head = post = delete = patch = put = options = _forward

    def _write_response(self, response: dict) -> None:
        status = response.get("status")
        headers = response.get("headers") or {}
        try:
            if not isinstance(status, int) or not 200 <= status <= 999:
                raise ValueError(f"status {status!r} is not an integer in 200-999")
            if not isinstance(headers, dict):
                raise ValueError("headers is not an object")
            body = decode_body(response)
            self.set_status(status)
            for name, value in headers.items():
                if not isinstance(name, str) or not _HEADER_NAME(name):
                    raise ValueError(f"header name {name!r} is not an HTTP token")
                if not isinstance(value, str) or not _HEADER_VALUE(value):
                    raise ValueError(f"header {name} has a value with control or "
                                     "non-Latin-1 characters")
                if name.lower() not in _HOP_BY_HOP:
                    self.set_header(name, value)
        except (ValueError, TypeError, ProtocolError) as exc:
            self.clear()
            self.send_gateway_error(GatewayError(
                502, "bad_worker_response", "the endpoint's worker sent an invalid response",
                log_message=f"{self._endpoint}: invalid response: {exc}"))
            return
        self.set_header("X-Request-Id", self.request_id)
        if status == 204 or status == 304:
            self.finish()  # no body allowed; whatever the worker sent is dropped
        else:
            self.finish(body)

    def _send_api_document(self) -> None:
        request = self.request
        document = self.api_document(f"{request.protocol}://{request.host}")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Request-Id", self.request_id)
        self.finish(json.dumps(document) if request.method == "GET" else None)

    def send_gateway_error(self, error: GatewayError) -> None:
        """Answer with the one JSON error shape; log the detail on the gateway's side."""
        if error.status >= 500:
            log.warning("%s %s -> %d %s: %s", self.request.method, self.request.path,
                        error.status, error.error_type, error.log_message or error.message)
        elif error.log_message:
            log.info("%s %s -> %d: %s", self.request.method, self.request.path,
                     error.status, error.log_message)
        self.set_status(error.status)
        for name, value in error.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.set_header("X-Request-Id", self.request_id)
        self.finish(error.body(self.request_id))

    def write_error(self, status_code: int, **kwargs) -> None:
        """Tornado's own errors (e.g. an unsupported method, a bug here) in our shape."""
        if self.request_id == "":
            self.request_id = str(uuid.uuid4())
        reason = self._reason or "error"
        error_type = "internal" if status_code >= 500 else "bad_request"
        if status_code == 405:
            error_type = "method_not_allowed"
        self.set_header("Content-Type", "application/json")
        self.set_header("X-Request-Id", self.request_id)
        self.finish(error_body(reason, error_type, self.request_id))


def _has_body(headers) -> bool:
    length = headers.get("Content-Length")
    return (length is not None and length != "0") or "Transfer-Encoding" in headers


def _query_items(arguments: dict[str, list[bytes]]) -> dict[str, list[str]]:
    return {name: [v.decode("utf-8", "replace") for v in values]
            for name, values in arguments.items()}


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
                       api_document_path: str | None = "/openapi.json",
                       **settings) -> web.Application:
    """The data-plane Application: every path goes to ``DataPlaneHandler``.

    ``log_function`` replaces Tornado's access log (pass ``lambda handler: None`` to skip
    it on the hot path). ``api_document(base_url) -> dict``, when given, answers
    ``GET api_document_path`` with the OpenAPI document of the endpoints, but only when no
    endpoint routes that method and path: a user's route always wins.
    """
    settings["log_function"] = log_function or _log_failures
    counter = InflightCounter()
    handler_args = {"supervisor": supervisor, "counter": counter}
    if api_document is not None and api_document_path:
        handler_args.update(api_document=api_document, api_document_path=api_document_path)
    app = web.Application([(r".*", DataPlaneHandler, handler_args)],
                          compress_response=False, **settings)
    app.inflight = counter  # the gateway drains on it at shutdown
    return app


def _log_failures(handler: web.RequestHandler) -> None:
    """The access log for the data plane: failed requests only (successes are counted in
    the endpoint's metrics; a log line each would cost more than the request itself)."""
    status = handler.get_status()
    if status >= 400:
        web.access_log.log(logging.WARNING if status < 500 else logging.ERROR,
                           "%d %s %.2fms", status, handler._request_summary(),
                           1000.0 * handler.request.request_time())


def serve_dataplane(app: web.Application, host: str = "127.0.0.1", port: int = 8080, *,
                    reuse_port: bool = False, backlog: int = 1024,
                    sockets: list[socket.socket] | None = None) -> httpserver.HTTPServer:
    """Bind and start serving ``app``; returns the server (``stop()`` it to stop accepting).

    With ``reuse_port`` every process that calls this binds its own ``SO_REUSEPORT``
    socket on the same port and the kernel spreads connections across them, which is how
    multi-process mode shares the port. Pass ``sockets`` to serve already-bound sockets.
    """
    server = httpserver.HTTPServer(app, xheaders=False, idle_connection_timeout=300)
    if sockets is None:
        sockets = netutil.bind_sockets(port, address=host, reuse_port=reuse_port,
                                       backlog=backlog)
    server.add_sockets(sockets)
    return server
