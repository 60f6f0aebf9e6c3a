"""The Jupyter server extension: runs the project's gateway beside Jupyter and proxies to it.

When Jupyter Server starts, the extension attaches to the live gateway of
``<root_dir>/.edgebook`` or starts one as a separate process, starts another if it goes
away (backing off, and giving up after ``MAX_FAILURES`` failures in a row, after which its
routes answer 503 with the reason), and stops it when Jupyter stops (only if the extension
started it). Under Jupyter's own auth
(token or cookie; XSRF checked on unsafe methods) and authorization (resource ``edgebook``)
it serves, forwarding the raw path and dropping Jupyter's ``token``/``_xsrf`` parameters:

- ``/edgebook/api/<path>``: the gateway's admin API (``/api/<path>``), including the
  ``events`` stream, with the admin token added on the server side;
- ``/edgebook/admin/``: the gateway's headless admin page, which there uses the routes
  above with Jupyter's login instead of asking for the admin token;
- ``/edgebook/proxy/<path>``: the data plane, bodies streamed, so endpoints are reachable
  through the Jupyter server's own address (Binder, remote servers). A request that lists
  its headers in ``X-Edgebook-Request-Headers`` (the sidebar's request builder does) reaches
  the endpoint with exactly those; any the proxy will not forward are named in the
  response's ``X-Edgebook-Dropped-Headers``. Every response is sandboxed
  (``Content-Security-Policy: sandbox``, ``X-Content-Type-Options: nosniff``).

It also relays the gateway's admin event stream onto Jupyter Server's event bus
(``EVENT_SCHEMA_ID``, schema in ``events/gateway.yaml``), which the sidebar reads over
Jupyter's own events websocket instead of holding a stream open per tab.

Kernels started by this server inherit ``EDGEBOOK_DATA_DIR`` (so they use this gateway),
``EDGEBOOK_SERVER_ROOT`` and ``EDGEBOOK_PROXY_BASE`` (so cells can link through the proxy).

With ``EDGEBOOK_ADMIN_URL`` and ``EDGEBOOK_ADMIN_TOKEN`` (and ``EDGEBOOK_URL`` for the data
plane) set, or the same as ``c.EdgebookExtension.admin_url/admin_token/url``, no gateway is
started: the routes, the relay and the kernels use that gateway elsewhere
(``RemoteGateway``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado import httputil, web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.iostream import StreamClosedError
from traitlets import Bool, Float, List, Unicode, default

from .. import paths
from ..errors import error_body
from ..discovery import RuntimeInfo, find_or_start, gateway_log, pid_alive
from ..sse import EventParser

#: Request headers never forwarded: hop-by-hop ones, and Jupyter's credentials, which must
#: not reach the gateway (or a handler's worker).
DROP_REQUEST = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                "trailer", "transfer-encoding", "upgrade", "host", "cookie", "authorization",
                "x-xsrftoken", "x-csrftoken", "content-length"}
# Set-Cookie too: through this proxy a handler answers on Jupyter's own origin, where a
# cookie could shadow Jupyter's session or XSRF cookies (the gateway's port keeps them).
DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length", "server",
                 "date", "trailer", "upgrade", "set-cookie"}
#: The request builder lists the headers it means to send here (base64 of JSON
#: ``[name, value]`` pairs): a browser adds its own and Jupyter's, and cannot set Cookie.
DECLARED_HEADERS = "X-Edgebook-Request-Headers"
#: Names from that list the proxy did not forward, so the user is told rather than guessing.
DROPPED_HEADERS = "X-Edgebook-Dropped-Headers"
#: Declared headers never forwarded: they describe this hop, not the request.
NOT_FORWARDED = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                 "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
_HEADER_NAME = frozenset("!#$%&'*+-.^_`|~0123456789"
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Pauses before each new start after a failure, and how many failures in a row end the
#: attempts: a gateway that cannot start (a taken port in serve_args, a broken install) is
#: reported through /edgebook/api/... answering 503, not restarted for ever.
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
MAX_FAILURES = 5
#: A gateway that served this long before it died was healthy: its death starts a new count.
STABLE_AFTER = 60.0
#: Query parameters that are Jupyter's credentials, never forwarded to the gateway (so never
#: to a handler, its logs or the recorded samples).
DROP_QUERY = {"token", "_xsrf"}
#: Added to every data-plane response served on Jupyter's origin: a handler's HTML runs in
#: an opaque origin (no access to Jupyter's cookies, storage or API), and nothing is sniffed
#: into a type the handler did not declare.
PROTECT_RESPONSE = (("Content-Security-Policy", "sandbox"),
                    ("X-Content-Type-Options", "nosniff"))
#: The server extension's authorization resource (``Authorizer.is_authorized``).
AUTH_RESOURCE = "edgebook"
STREAM_TIMEOUT = 24 * 3600.0  # an event stream has no answer deadline
EVENT_SCHEMA = Path(__file__).resolve().parent / "events" / "gateway.yaml"
EVENT_SCHEMA_ID = "https://events.edgebook.dev/gateway/v1"
#: The admin page's files are flat (index.html, admin.js, admin.css): a name, or none.
PAGE_FILE = re.compile(r"(?:[A-Za-z0-9_-]+\.[a-z]+)?")
#: Seconds between relay heartbeats: a client that hears nothing for a few of them polls.
HEARTBEAT = 10.0


def declared_headers(value: str) -> tuple[list[tuple[str, str]], list[str]] | None:
    """The headers to forward and the names dropped, from ``DECLARED_HEADERS``; None if malformed."""
    try:
        pairs = json.loads(base64.b64decode(value, validate=True).decode("utf-8"))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(pairs, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
            for pair in pairs):
        return None
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    for name, text in pairs:
        # Nothing typed can split or smuggle a header: names are tokens, values one latin-1 line.
        fits = bool(name) and set(name) <= _HEADER_NAME and not any(c in text for c in "\r\n\0")
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            fits = False
        if fits and name.lower() not in NOT_FORWARDED:
            kept.append((name, text))
        else:
            dropped.append(name)
    return kept, dropped


class GatewayProcess:
    """The gateway of one data dir as this Jupyter server sees it: attached or owned.

    Invariant: ``info`` is the runtime info of the gateway that serves now (None while it
    is starting); ``process`` is the gateway this object started and must stop, or None
    when it attached to one that was already running. Only the supervising task changes
    either, so there is never more than one owned gateway.
    """

    def __init__(self, data_dir: str, *, serve_args: list[str] | None = None,
                 startup_timeout: float = 60.0, log=None,
                 backoff: tuple[float, ...] = RESTART_BACKOFF, max_failures: int = MAX_FAILURES):
        self.data_dir = os.path.abspath(data_dir)
        self.serve_args = list(serve_args or [])
        self.startup_timeout = startup_timeout
        self.log = log
        self.backoff = backoff
        self.max_failures = max_failures
        self.info: RuntimeInfo | None = None
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        #: Why the last start failed or the gateway died (None: it serves, or is starting
        #: for the first time); ``gave_up``: no more attempts after ``max_failures``.
        self.failure: str | None = None
        self.gave_up = False
        self._served_since = 0.0
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._ready = asyncio.Event()

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Attach or start in the background, then keep a gateway running until ``stop``."""
        self._task = asyncio.ensure_future(self._supervise())

    async def wait_ready(self, timeout: float) -> RuntimeInfo | None:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self.info

    async def stop(self) -> None:
        """Stop supervising; stop the gateway if this object started it."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        self._log("info", "stopping the edgebook gateway (pid %d)", process.pid)
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            self._log("warning", "the edgebook gateway did not stop; killing it")
            process.kill()
            process.wait()

    @property
    def owned(self) -> bool:
        return self.process is not None

    # -- supervision ---------------------------------------------------------------------------

    async def _attach_or_spawn(self) -> None:
        self._ready.clear()
        self.info = None
        loop = asyncio.get_running_loop()
        info, process = await loop.run_in_executor(None, self._attach_or_spawn_blocking)
        if self._stopping:  # stopped while it was starting: do not leave it behind
            if process is not None:
                process.terminate()
                await loop.run_in_executor(None, process.wait)
            return
        self.info, self.process = info, process
        self._ready.set()
        how = f"started it (pid {process.pid})" if process else f"attached (pid {info.pid})"
        self._log("info", "edgebook gateway for %s: %s; data plane %s", self.data_dir, how,
                  info.url)

    def _attach_or_spawn_blocking(self) -> tuple[RuntimeInfo, subprocess.Popen | None]:
        """Runs on an executor thread, under the data dir's start lock (see discovery)."""
        info, started = find_or_start(self.data_dir, _OwnedGateway,
                                      timeout=self.startup_timeout, serve_args=self.serve_args,
                                      started_by=f"the Jupyter server (pid {os.getpid()})")
        return info, started.process if started is not None else None

    async def _supervise(self) -> None:
        """Attach or start; whenever the gateway goes away, start another, waiting longer
        after each failure (a start that failed, or a gateway that died within
        ``STABLE_AFTER`` seconds), and give up after ``max_failures`` in a row."""
        failures = 0
        while not self._stopping:
            try:
                await self._attach_or_spawn()
            except Exception as exc:
                self.failure = f"starting the gateway failed: {exc}"
                self._log("error", "edgebook: %s", self.failure)
            else:
                self._served_since = time.monotonic()
                while not self._stopping and self._alive():
                    await asyncio.sleep(0.5)
                if self._stopping:
                    return
                self.failure = self._death()
                self.info = None
                self._log("warning", "edgebook: %s", self.failure)
                if time.monotonic() - self._served_since >= STABLE_AFTER:
                    failures = 0
            failures += 1
            if failures >= self.max_failures:
                self.gave_up = True
                self._log("error", "edgebook: giving up on the gateway for %s after %d "
                          "failures in a row; fix the cause and restart Jupyter (last: %s)",
                          self.data_dir, failures, self.failure)
                return
            pause = self.backoff[min(failures - 1, len(self.backoff) - 1)]
            self._log("info", "edgebook: starting a gateway again in %g s", pause)
            await asyncio.sleep(pause)
            self.restarts += 1

    def _death(self) -> str:
        """Whose gateway went away, and how."""
        if self.process is not None:
            code = self.process.returncode
            how = (f"was killed by signal {-code}" if code is not None and code < 0
                   else f"exited with status {code}")
            return (f"the gateway this server started (pid {self.process.pid}) {how}; see "
                    f"{gateway_log(self.data_dir)}")
        pid = self.info.pid if self.info is not None else "?"
        return (f"the gateway this server attached to (pid {pid}, started outside Jupyter) "
                "exited; this server starts one of its own")

    def unavailable(self) -> tuple[str, str, int | None]:
        """Why there is no gateway to proxy to now: (error_type, message, retry_after)."""
        if self.gave_up:
            return ("gateway_failed", f"the edgebook gateway is not running: {self.failure}; "
                    "Jupyter stopped restarting it (fix the cause, then restart Jupyter)", None)
        if self.failure:
            return ("gateway_starting", f"the edgebook gateway is starting again after: "
                    f"{self.failure}", 1)
        return ("gateway_starting", "the edgebook gateway is starting", 1)

    def _alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.info is not None and pid_alive(self.info.pid)

    def _log(self, level: str, message: str, *args: Any) -> None:
        if self.log is not None:
            getattr(self.log, level)(message, *args)


class _OwnedGateway:
    """A gateway this server starts and stops (its child, in a session of its own)."""

    def __init__(self, argv: list[str], log_path: str):
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=out, start_new_session=True, close_fds=True)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class RemoteGateway:
    """A gateway elsewhere (another machine, a Kubernetes Service), named by its admin URL,
    admin token and data-plane URL: nothing to start, supervise or stop here. Same face as
    ``GatewayProcess`` for the handlers and the event relay."""

    def __init__(self, admin_url: str, token: str, url: str = "") -> None:
        self.data_dir = ""
        self.info = RuntimeInfo(url=url.rstrip("/"), admin_url=admin_url.rstrip("/"),
                                token=token, pid=0, version="", started=time.time())
        self.owned = False

    async def start(self) -> None:
        return None

    async def wait_ready(self, timeout: float) -> RuntimeInfo | None:
        return self.info

    async def stop(self) -> None:
        return None

    def unavailable(self) -> tuple[str, str, int | None]:
        return ("not_configured", "no data-plane URL for the remote edgebook gateway: set "
                "EDGEBOOK_URL (or c.EdgebookExtension.url)", None)


class EventRelay:
    """Follows the gateway's admin event stream and emits each event on Jupyter's event bus.

    Emits the gateway's ``hello`` on every (re)connect, a ``heartbeat`` (with the last
    sequence number seen) every ``HEARTBEAT`` seconds while connected, and ``disconnected``
    when the stream ends; then reconnects.
    """

    def __init__(self, gateway: GatewayProcess | RemoteGateway, event_logger, log) -> None:
        self.gateway = gateway
        self.event_logger = event_logger
        self.log = log
        self.connected = False
        self.last_seq: int | None = None
        self._tasks: list[asyncio.Task] = []
        # Its own client: a stream held open must not take a slot of the shared one.
        self._client = AsyncHTTPClient(force_instance=True, max_body_size=1 << 50)

    def start(self) -> None:
        self.event_logger.register_event_schema(EVENT_SCHEMA)
        self._tasks = [asyncio.ensure_future(self._follow()),
                       asyncio.ensure_future(self._beat())]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._client.close()

    def emit(self, event: dict[str, Any]) -> None:
        try:
            self.event_logger.emit(schema_id=EVENT_SCHEMA_ID, data=event)
        except Exception as exc:  # an event the schema rejects must not end the relay
            self.log.warning("edgebook: not relaying event %r: %s", event.get("type"), exc)

    async def _follow(self) -> None:
        while True:
            info = await self.gateway.wait_ready(3600.0)
            if info is None:
                continue
            parser = EventParser()

            def feed(chunk: bytes) -> None:
                for event in parser.feed(chunk):
                    seq = event.get("seq")
                    if event.get("type") == "hello":
                        self.connected = True
                        # A restarted gateway counts from zero again.
                        if isinstance(seq, int) and (self.last_seq is None or seq < self.last_seq):
                            self.last_seq = seq
                    elif isinstance(seq, int):
                        self.last_seq = seq
                    self.emit(event)

            # After a reconnect the gateway replays what it still holds past `since`.
            since = f"?since={self.last_seq}" if self.last_seq is not None else ""
            request = HTTPRequest(info.admin_url.rstrip("/") + "/api/events" + since,
                                  headers={"Authorization": f"Bearer {info.token}",
                                           "Accept": "text/event-stream"},
                                  streaming_callback=feed, connect_timeout=5.0,
                                  request_timeout=STREAM_TIMEOUT)
            try:
                await self._client.fetch(request, raise_error=False)
            except Exception as exc:  # refused, reset, timed out: try again shortly
                self.log.debug("edgebook: event stream: %s", exc)
            finally:
                if self.connected:
                    self.connected = False
                    self.emit({"type": "disconnected"})
            await asyncio.sleep(1.0)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            if self.connected:
                # With the last number seen, a client that missed events can tell.
                beat: dict[str, Any] = {"type": "heartbeat"}
                if self.last_seq is not None:
                    beat["seq"] = self.last_seq
                self.emit(beat)


# -- handlers --------------------------------------------------------------------------------

class _Forwarding:
    """Shared by both proxies: forward the request, stream the answer back."""

    gateway: GatewayProcess | RemoteGateway
    #: Declared request headers that were not forwarded; reported in the response.
    dropped_headers: list[str] = []
    auth_resource = AUTH_RESOURCE
    #: where this proxy's routes start, after the base URL
    route_prefix = ""
    protect: tuple[tuple[str, str], ...] = ()

    def upstream_target(self) -> str:
        """The raw path after the route's prefix (never percent-decoded, so ``%2F`` and
        ``%3F`` stay inside their segment) and the query without Jupyter's credentials."""
        prefix = url_path_join(self.base_url, self.route_prefix)
        path = self.request.path
        raw = path[len(prefix):] if path.startswith(prefix) else ""
        raw = raw if raw.startswith("/") else "/" + raw
        kept = [part for part in self.request.query.split("&")
                if part and unquote_plus(part.partition("=")[0]) not in DROP_QUERY]
        return raw + ("?" + "&".join(kept) if kept else "")

    def _protect(self) -> None:
        for name, value in self.protect:
            if name == "Content-Security-Policy":
                # Jupyter's own policy and the handler's each get the directive: a browser
                # enforces every policy it is sent.
                policies = self._headers.get_list(name)
                self.clear_header(name)
                for policy in policies or [""]:
                    self.add_header(name, f"{policy}; {value}" if policy else value)
            else:
                self.set_header(name, value)

    def upstream_headers(self, extra: dict[str, str] | None = None) -> httputil.HTTPHeaders:
        headers = httputil.HTTPHeaders()
        for name, value in self.request.headers.get_all():
            if name.lower() not in DROP_REQUEST:
                headers.add(name, value)
        headers["X-Forwarded-For"] = self.request.remote_ip or ""
        headers["X-Forwarded-Proto"] = self.request.protocol
        for name, value in (extra or {}).items():
            headers[name] = value
        return headers

    def fail(self, status: int, error_type: str, message: str, retry_after: int | None = None):
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if retry_after is not None:
            self.set_header("Retry-After", str(retry_after))
        self.finish(error_body(message, error_type))

    async def forward(self, url: str, headers: httputil.HTTPHeaders, *,
                      timeout: float) -> None:
        """Send the request to ``url`` and stream status, headers and body back.

        The upstream request is HTTP/1.0 on its own connection, so the body is simply
        everything until the gateway closes it; closing the browser's connection closes
        the upstream one (``on_connection_close``), which ends an event stream at once.
        """
        parts = urlsplit(url)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port), 5.0)
        except (OSError, asyncio.TimeoutError) as exc:
            self.fail(502, "gateway_unreachable", f"the edgebook gateway did not answer: {exc}")
            return
        self._upstream = writer
        try:
            method = self.request.method
            body = self.request.body or b""
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            lines = [f"{method} {target} HTTP/1.0", f"Host: {parts.netloc}"]
            lines += [f"{name}: {value}" for name, value in headers.get_all()]
            if body or method in ("POST", "PUT", "PATCH"):
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                first, _, rest = head.decode("latin-1").partition("\r\n")
                start = httputil.parse_response_start_line(first)
                upstream_headers = httputil.HTTPHeaders.parse(rest)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, httputil.HTTPInputError) as exc:
                if not self.request.connection.stream.closed():
                    self.fail(502, "gateway_unreachable",
                              f"the edgebook gateway gave no answer: {exc!r}")
                return
            self.clear()
            self.set_status(start.code, start.reason or None)
            self.clear_header("Content-Type")  # the upstream's own, if any, follows
            for name, value in upstream_headers.get_all():
                if name.lower() not in DROP_RESPONSE:
                    self.add_header(name, value)
            if self.dropped_headers:
                self.set_header(DROPPED_HEADERS, ", ".join(self.dropped_headers))
            self._protect()
            if method != "HEAD" and start.code not in (204, 304):
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    self.write(chunk)
                    try:
                        await self.flush()
                    except StreamClosedError:
                        return
            if not self._finished:
                self.finish()
        finally:
            writer.close()

    def on_connection_close(self) -> None:
        upstream = getattr(self, "_upstream", None)
        if upstream is not None:
            upstream.close()
        super().on_connection_close()


class AdminProxyHandler(_Forwarding, APIHandler):
    """``/edgebook/api/<path>`` -> the gateway's ``/api/<path>`` with its admin token.

    Reading needs Jupyter's ``read`` permission on the ``edgebook`` resource; anything else
    (which builds and runs code) needs ``execute``."""

    route_prefix = "edgebook/api"
    protect = (("X-Content-Type-Options", "nosniff"),)

    def initialize(self, gateway: GatewayProcess | RemoteGateway) -> None:
        self.gateway = gateway

    async def _proxy(self, path: str) -> None:
        info = self.gateway.info
        if info is None:
            self.fail(503, *self.gateway.unavailable())
            return
        url = info.admin_url.rstrip("/") + "/api" + self.upstream_target()
        headers = self.upstream_headers({"Authorization": f"Bearer {info.token}"})
        streaming = path.rstrip("/") == "events"
        await self.forward(url, headers, timeout=STREAM_TIMEOUT if streaming else 3600.0)

    @web.authenticated
    @authorized("read")
    async def get(self, path: str) -> None:
        await self._proxy(path)

    @web.authenticated
    @authorized("execute")
    async def _change(self, path: str) -> None:
        await self._proxy(path)

    post = put = patch = delete = _change


class AdminPageHandler(_Forwarding, JupyterHandler):
    """``/edgebook/admin/<file>`` -> the gateway's headless page ``/admin/<file>``. Behind
    Jupyter's login the page needs no admin token: it sees where it was served from and
    calls ``/edgebook/api/`` with Jupyter's cookie and XSRF token instead."""

    def initialize(self, gateway: GatewayProcess | RemoteGateway) -> None:
        self.gateway = gateway

    @web.authenticated
    @authorized("read")
    async def get(self, path: str) -> None:
        info = self.gateway.info
        if info is None:
            self.fail(503, "gateway_starting", "the edgebook gateway is starting", 1)
            return
        if not PAGE_FILE.fullmatch(path):  # the page's own files, nothing beside them
            self.fail(404, "not_found", "no such file of the admin page")
            return
        self.xsrf_token  # noqa: B018 (sets the _xsrf cookie the page sends back)
        url = info.admin_url.rstrip("/") + "/admin/" + path
        await self.forward(url, self.upstream_headers(), timeout=60.0)


class DataPlaneProxyHandler(_Forwarding, JupyterHandler):
    """``/edgebook/proxy/<path>`` -> the gateway's data plane ``/<path>``, streamed."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    route_prefix = "edgebook/proxy"
    protect = PROTECT_RESPONSE

    def initialize(self, gateway: GatewayProcess | RemoteGateway) -> None:
        self.gateway = gateway

    async def _proxy(self, path: str) -> None:
        info = self.gateway.info
        if info is None or not info.url:
            self.fail(503, *self.gateway.unavailable())
            return
        url = info.url.rstrip("/") + self.upstream_target()
        declared = self.request.headers.get(DECLARED_HEADERS)
        if declared is None:
            headers = self.upstream_headers()
        else:
            parsed = declared_headers(declared)
            if parsed is None:
                self.fail(400, "bad_request",
                          f"{DECLARED_HEADERS} must be base64 of JSON [name, value] pairs")
                return
            kept, self.dropped_headers = parsed
            headers = httputil.HTTPHeaders()
            for name, value in kept:
                headers.add(name, value)
            headers["X-Forwarded-For"] = self.request.remote_ip or ""
            headers["X-Forwarded-Proto"] = self.request.protocol
        await self.forward(url, headers, timeout=3600.0)

    # Actions named explicitly: a bare ``@authorized`` keeps the first request's action
    # for every later call of the same method object.
    @web.authenticated
    @authorized("read")
    async def _read(self, path: str) -> None:
        await self._proxy(path)

    @web.authenticated
    @authorized("write")
    async def _write(self, path: str) -> None:
        await self._proxy(path)

    get = head = options = _read
    post = put = patch = delete = _write


# -- the extension ---------------------------------------------------------------------------

class EdgebookExtension(ExtensionApp):
    """Starts or attaches to the project's gateway and exposes it under Jupyter's auth."""

    name = "edgebook"

    data_dir = Unicode("", config=True,
                       help="The gateway's data dir (default: EDGEBOOK_DATA_DIR, else "
                            "<root_dir>/.edgebook).")
    start_gateway = Bool(True, config=True,
                         help="Start (or attach to) the gateway when Jupyter starts.")
    serve_args = List(Unicode(), config=True,
                      help="Extra arguments for `edgebook serve` when the extension starts "
                           "it, one list item per argument, e.g. "
                           "c.EdgebookExtension.serve_args = ['--port', '8081', "
                           "'--release-after-dev'].")
    startup_timeout = Float(60.0, config=True,
                            help="Seconds to wait for a started gateway's runtime file.")
    admin_url = Unicode(config=True,
                        help="The admin API of a gateway elsewhere (default: "
                             "EDGEBOOK_ADMIN_URL). Set, the sidebar, the admin page and "
                             "kernels drive that gateway, and none is started here.")
    admin_token = Unicode(config=True,
                          help="That gateway's admin token (default: EDGEBOOK_ADMIN_TOKEN).")
    url = Unicode(config=True,
                  help="That gateway's data plane, for /edgebook/proxy (default: "
                       "EDGEBOOK_URL).")

    @default("admin_url")
    def _admin_url_default(self) -> str:
        return os.environ.get("EDGEBOOK_ADMIN_URL", "")

    @default("admin_token")
    def _admin_token_default(self) -> str:
        return os.environ.get("EDGEBOOK_ADMIN_TOKEN", "")

    @default("url")
    def _url_default(self) -> str:
        return os.environ.get("EDGEBOOK_URL", "")

    def initialize_settings(self) -> None:
        root = os.path.abspath(os.path.expanduser(self.serverapp.root_dir))
        if self.admin_url:
            if not self.admin_token:
                raise ValueError(f"the edgebook gateway at {self.admin_url} needs its admin "
                                 "token: set EDGEBOOK_ADMIN_TOKEN or "
                                 "c.EdgebookExtension.admin_token")
            self.gateway = RemoteGateway(self.admin_url, self.admin_token, self.url)
            self.log.info("edgebook: using the remote gateway at %s", self.admin_url)
            # Kernels started from now on inherit these and use that gateway.
            os.environ.update({"EDGEBOOK_ADMIN_URL": self.admin_url,
                               "EDGEBOOK_ADMIN_TOKEN": self.admin_token})
            if self.url:
                os.environ["EDGEBOOK_URL"] = self.url
        else:
            data_dir = self.data_dir or paths.default_data_dir(root)
            self.gateway = GatewayProcess(data_dir, serve_args=self.serve_args,
                                          startup_timeout=self.startup_timeout, log=self.log)
            # Kernels started from now on inherit these and use this gateway.
            os.environ["EDGEBOOK_DATA_DIR"] = self.gateway.data_dir
        os.environ["EDGEBOOK_SERVER_ROOT"] = root
        os.environ["EDGEBOOK_PROXY_BASE"] = url_path_join(self.serverapp.base_url,
                                                          "edgebook/proxy")
        self.relay = EventRelay(self.gateway, self.serverapp.event_logger, self.log)

    def initialize_handlers(self) -> None:
        kwargs = {"gateway": self.gateway}
        self.handlers.extend([
            (r"/edgebook/api/(.*)", AdminProxyHandler, kwargs),
            (r"/edgebook/admin", web.RedirectHandler, {"url": "admin/"}),
            (r"/edgebook/admin/(.*)", AdminPageHandler, kwargs),
            (r"/edgebook/proxy(/.*)?", DataPlaneProxyHandler, kwargs),
        ])

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        if not self.start_gateway:
            return
        try:
            await self.gateway.start()
        except Exception as exc:  # Jupyter keeps working; the routes answer 503
            self.log.error("edgebook: could not start the gateway: %s", exc)
        self.relay.start()

    async def stop_extension(self) -> None:
        self.relay.stop()
        await self.gateway.stop()
