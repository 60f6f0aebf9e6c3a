"""The Jupyter server extension: runs the project's gateway beside Jupyter and proxies to it.

When Jupyter Server starts, the extension attaches to the live gateway of
``<root_dir>/.edgebook`` or starts one as a separate process, restarts it if it dies, and
stops it when Jupyter stops (only if the extension started it). Under Jupyter's own auth
(token or cookie; XSRF checked on unsafe methods) it serves:

- ``/edgebook/api/<path>``: the gateway's admin API (``/api/<path>``), including the
  ``events`` stream, with the admin token added on the server side;
- ``/edgebook/proxy/<path>``: the data plane, bodies streamed, so endpoints are reachable
  through the Jupyter server's own address (Binder, remote servers).

Kernels started by this server inherit ``EDGEBOOK_DATA_DIR`` (so they use this gateway),
``EDGEBOOK_SERVER_ROOT`` and ``EDGEBOOK_PROXY_BASE`` (so cells can link through the proxy).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado import httputil, web
from tornado.iostream import StreamClosedError
from traitlets import Bool, Float, List, Unicode

from .errors import error_body
from .runtime import RuntimeInfo, find_live, pid_alive

#: Request headers never forwarded: hop-by-hop ones, and Jupyter's credentials, which must
#: not reach the gateway (or a handler's worker).
DROP_REQUEST = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                "trailer", "transfer-encoding", "upgrade", "host", "cookie", "authorization",
                "x-xsrftoken", "x-csrftoken", "content-length"}
# Set-Cookie too: through this proxy a handler answers on Jupyter's own origin, where a
# cookie could shadow Jupyter's session or XSRF cookies (the gateway's port keeps them).
DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length", "server",
                 "date", "trailer", "upgrade", "set-cookie"}
RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STREAM_TIMEOUT = 24 * 3600.0  # an event stream has no answer deadline


class GatewayProcess:
    """The gateway of one data dir as this Jupyter server sees it: attached or owned.

    Invariant: ``info`` is the runtime info of the gateway that serves now (None while it
    is starting); ``process`` is the gateway this object started and must stop, or None
    when it attached to one that was already running. Only the supervising task changes
    either, so there is never more than one owned gateway.
    """

    def __init__(self, data_dir: str, *, serve_args: list[str] | None = None,
                 startup_timeout: float = 60.0, log=None):
        self.data_dir = os.path.abspath(data_dir)
        self.serve_args = list(serve_args or [])
        self.startup_timeout = startup_timeout
        self.log = log
        self.info: RuntimeInfo | None = None
        self.process: subprocess.Popen | None = None
        self.restarts = 0
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
        """Runs on an executor thread; the lock is the one kernels take to start a gateway."""
        os.makedirs(os.path.join(self.data_dir, "logs"), exist_ok=True)
        with open(os.path.join(self.data_dir, ".start.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                info = find_live(self.data_dir)
                if info is not None:
                    return info, None
                return self._spawn_blocking()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _spawn_blocking(self) -> tuple[RuntimeInfo, subprocess.Popen]:
        log_path = os.path.join(self.data_dir, "logs", "gateway.log")
        argv = [sys.executable, "-m", "edgebook", "serve", "--data-dir", self.data_dir,
                "--port", "0", *self.serve_args]
        with open(log_path, "ab") as out:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                       start_new_session=True, close_fds=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the edgebook gateway exited with status "
                                   f"{process.returncode}; see {log_path}")
            info = find_live(self.data_dir)
            if info is not None and info.pid == process.pid:
                return info, process
            time.sleep(0.05)
        process.kill()
        process.wait()
        raise RuntimeError(f"the edgebook gateway did not start within "
                           f"{self.startup_timeout:.0f} s; see {log_path}")

    async def _supervise(self) -> None:
        failures = 0
        first = True
        while not self._stopping:
            if not first:
                await asyncio.sleep(0.5)
                if self._alive() or self._stopping:
                    failures = 0
                    continue
                code = self.process.returncode if self.process is not None else None
                self._log("warning", "the edgebook gateway died (%s); starting a new one",
                          f"exit status {code}" if code is not None else "it was not ours")
                await asyncio.sleep(RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)])
            try:
                await self._attach_or_spawn()
                if not first:
                    self.restarts += 1
            except Exception as exc:  # keep trying, with longer pauses
                failures += 1
                self._log("error", "starting the edgebook gateway failed: %s", exc)
            first = False

    def _alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.info is not None and pid_alive(self.info.pid)

    def _log(self, level: str, message: str, *args: Any) -> None:
        if self.log is not None:
            getattr(self.log, level)(message, *args)


# -- handlers --------------------------------------------------------------------------------

class _Forwarding:
    """Shared by both proxies: forward the request, stream the answer back."""

    gateway: GatewayProcess

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
    """``/edgebook/api/<path>`` -> the gateway's ``/api/<path>`` with its admin token."""

    def initialize(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway

    async def _proxy(self, path: str) -> None:
        info = self.gateway.info
        if info is None:
            self.fail(503, "gateway_starting", "the edgebook gateway is starting", 1)
            return
        url = info.admin_url.rstrip("/") + "/api/" + path
        if self.request.query:
            url += "?" + self.request.query
        headers = self.upstream_headers({"Authorization": f"Bearer {info.token}"})
        streaming = path.rstrip("/") == "events"
        await self.forward(url, headers, timeout=STREAM_TIMEOUT if streaming else 3600.0)

    @web.authenticated
    async def _authenticated_proxy(self, path: str) -> None:
        await self._proxy(path)

    get = post = put = patch = delete = _authenticated_proxy


class DataPlaneProxyHandler(_Forwarding, JupyterHandler):
    """``/edgebook/proxy/<path>`` -> the gateway's data plane ``/<path>``, streamed."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway

    async def _proxy(self, path: str) -> None:
        info = self.gateway.info
        if info is None:
            self.fail(503, "gateway_starting", "the edgebook gateway is starting", 1)
            return
        # The raw path (not percent-decoded), as the gateway's router expects it.
        prefix = url_path_join(self.base_url, "edgebook/proxy")
        raw = (self.request.path[len(prefix):] if self.request.path.startswith(prefix)
               else path) or "/"
        url = info.url.rstrip("/") + (raw if raw.startswith("/") else "/" + raw)
        if self.request.query:
            url += "?" + self.request.query
        await self.forward(url, self.upstream_headers(), timeout=3600.0)

    @web.authenticated
    async def _authenticated_proxy(self, path: str) -> None:
        await self._proxy(path)

    get = head = post = put = patch = delete = options = _authenticated_proxy


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
                      help="Extra arguments for `edgebook serve` when the extension starts it.")
    startup_timeout = Float(60.0, config=True,
                            help="Seconds to wait for a started gateway's runtime file.")

    def initialize_settings(self) -> None:
        root = os.path.abspath(os.path.expanduser(self.serverapp.root_dir))
        data_dir = (self.data_dir or os.environ.get("EDGEBOOK_DATA_DIR")
                    or os.path.join(root, ".edgebook"))
        self.gateway = GatewayProcess(data_dir, serve_args=self.serve_args,
                                      startup_timeout=self.startup_timeout, log=self.log)
        # Kernels started from now on inherit these and use this gateway.
        os.environ["EDGEBOOK_DATA_DIR"] = self.gateway.data_dir
        os.environ["EDGEBOOK_SERVER_ROOT"] = root
        os.environ["EDGEBOOK_PROXY_BASE"] = url_path_join(self.serverapp.base_url,
                                                          "edgebook/proxy")

    def initialize_handlers(self) -> None:
        kwargs = {"gateway": self.gateway}
        self.handlers.extend([
            (r"/edgebook/api/(.*)", AdminProxyHandler, kwargs),
            (r"/edgebook/proxy(/.*)?", DataPlaneProxyHandler, kwargs),
        ])

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        if not self.start_gateway:
            return
        try:
            await self.gateway.start()
        except Exception as exc:  # Jupyter keeps working; the routes answer 503
            self.log.error("edgebook: could not start the gateway: %s", exc)

    async def stop_extension(self) -> None:
        await self.gateway.stop()
