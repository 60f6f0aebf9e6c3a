"""The gateway: composes registry, build service, supervisor and data plane.

One ``Gateway`` object per gateway process. It owns the deploy flow (create/update ->
building -> build -> new revision -> hot reload -> running, or build_failed /
deploy_failed with the reason), restores endpoints from cached binaries at start, publishes
build progress and state changes on an ``EventBus``, and shuts down cleanly (stop
accepting, drain in-flight requests, stop workers).

A gateway runs in one of two roles. The *primary* owns the admin API, every registry write
and every build. A *follower* (``--processes N``: one per extra process) only serves: it
reads the registry and makes its own supervisor match it whenever the primary tells it to
(``reconcile``). Binaries are addressed by content hash, so every process runs the same
bytes for the same revision.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from tornado.httpserver import HTTPServer

from . import __version__
from .errors import GatewayError
from .openapi.samples import SampleStore
from .protocol import DEFAULT_MAX_FRAME
from .registry import (EndpointRecord, NotFoundError, Registry, RegistryError,
                       RevisionRecord, ServiceRecord, SQLiteRegistry)
from .sandbox import Limits, Sandbox

log = logging.getLogger("edgebook.gateway")

#: Per-endpoint resource limits a client may set (see edgebook.sandbox.Limits).
LIMIT_OPTIONS = tuple(Limits.OPTIONS)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
PROFILES = ("dev", "release")
DEFAULT_OPTIONS = {"workers": 1, "timeout": 30.0, "max_body": 10 * 1024 * 1024,
                   "profile": "dev"}


@dataclasses.dataclass
class GatewayConfig:
    """Everything a gateway process needs to know; the CLI fills it from its flags."""

    data_dir: str
    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    processes: int = 1
    token: str | None = None
    #: Go live on the dev build, then build release in the background and hot-swap.
    release_after_dev: bool = False
    drain_timeout: float = 30.0
    max_frame: int = DEFAULT_MAX_FRAME
    public_url: str | None = None
    #: Where the data plane serves the OpenAPI document of its endpoints when no endpoint
    #: routes that path (None: nowhere; the admin API always has it).
    openapi_path: str | None = "/openapi.json"

    @property
    def registry_path(self) -> str:
        return os.path.join(self.data_dir, "registry.sqlite3")


# -- events -----------------------------------------------------------------------------------

class EventBus:
    """Fan-out of gateway events to any number of asyncio subscribers.

    ``publish`` never blocks: each subscriber has a bounded queue, and one that falls
    ``maxsize`` events behind is dropped (its iterator ends) rather than slowing the others.
    The last ``history`` events are kept so a new subscriber can ask for what it missed.
    """

    def __init__(self, maxsize: int = 1000, history: int = 200):
        self._subscribers: set[asyncio.Queue] = set()
        self._maxsize = maxsize
        self._history: collections.deque[dict] = collections.deque(maxlen=history)
        self._seq = 0

    def publish(self, event_type: str, **fields: Any) -> dict:
        self._seq += 1
        event = {"type": event_type, "seq": self._seq, "time": time.time(), **fields}
        self._history.append(event)
        for queue in list(self._subscribers):
            if queue.full():
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)  # tells the subscriber it was dropped
            else:
                queue.put_nowait(event)
        return event

    def since(self, seq: int) -> list[dict]:
        return [e for e in self._history if e["seq"] > seq]

    @property
    def last_seq(self) -> int:
        return self._seq

    def subscribe(self) -> Subscription:
        """A new subscription; call ``close()`` on it when done."""
        queue: asyncio.Queue = asyncio.Queue(self._maxsize)
        self._subscribers.add(queue)
        return Subscription(self, queue)

    def _unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        for queue in list(self._subscribers):
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        self._subscribers.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class Subscription:
    """One subscriber's view of an ``EventBus``."""

    def __init__(self, bus: EventBus, queue: asyncio.Queue):
        self._bus = bus
        self._queue = queue
        self.closed = False

    async def get(self, timeout: float | None = None) -> dict | None:
        """The next event; None when the bus dropped or closed this subscription.

        Raises ``asyncio.TimeoutError`` when nothing came within ``timeout`` seconds.
        """
        if self.closed:
            return None
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if event is None:
            self.closed = True
        return event

    def close(self) -> None:
        self.closed = True
        self._bus._unsubscribe(self._queue)


# -- in-flight tracking for draining ----------------------------------------------------------

# -- the gateway -----------------------------------------------------------------------------

class DeployRejected(GatewayError):
    """A deploy request that cannot be accepted as sent (400/404/409)."""


@dataclasses.dataclass
class EndpointSpec:
    """What a client asks for when it creates or updates an endpoint."""

    name: str
    method: str
    path: str
    source: str
    deps: list[str] = dataclasses.field(default_factory=list)
    domain: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    services: list[str] = dataclasses.field(default_factory=list)
    origin: dict[str, Any] | None = None


class Gateway:
    """Registry + builder + supervisor + data plane for one gateway process.

    Dependencies may be passed in (tests pass a fake builder); by default ``start``
    creates the SQLite registry, the build service and the supervisor for ``config``.
    """

    def __init__(self, config: GatewayConfig, *, registry: Registry | None = None,
                 builder: Any = None, supervisor_factory: Callable[..., Any] | None = None,
                 service_handler: Callable[..., Any] | None = None,
                 build_request: Callable[..., Any] | None = None, role: str = "primary",
                 services: Any = None, sandbox: Sandbox | None = None):
        if role not in ("primary", "follower"):
            raise ValueError(f"unknown gateway role {role!r}")
        self.config = config
        self.role = role
        self.token = config.token or secrets.token_urlsafe(32)
        self.events = EventBus()
        self.registry = registry
        self.builder = builder
        self._supervisor_factory = supervisor_factory
        self._service_handler = service_handler
        self.services = services  # a ServiceManager; created at start unless given
        self._build_request = build_request
        self.supervisor: Any = None
        self.started = 0.0
        self.url = ""
        self._dataplane_server: HTTPServer | None = None
        self._inflight: Any = None  # the data plane's InflightCounter
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._home: str | None = None
        self._stopping = False
        self.followers: Any = None  # set by the multi-process launcher (primary only)
        self.sandbox: Sandbox | None = sandbox  # how workers start; Sandbox.default() if None
        self.last_builds: dict[str, dict] = {}
        # Real exchanges per endpoint and status, for the OpenAPI document's examples.
        self.samples = SampleStore()
        self._service_configs: dict[str, tuple[str, dict]] = {}

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, dataplane_sockets: Sequence[socket.socket] | None = None) -> None:
        """Open the registry, listen on the data plane, restore endpoints."""
        from .dataplane import make_dataplane_app, serve_dataplane  # runtime engine
        from .supervisor import Supervisor

        os.makedirs(self.config.data_dir, mode=0o700, exist_ok=True)
        _owner_only(self.config.data_dir)  # the token, the registry, every handler's source
        self._home = tempfile.mkdtemp(prefix="edgebook-home-")
        if self._supervisor_factory is None and self.sandbox is None:
            self.sandbox = Sandbox.default()
        if self.sandbox is not None:
            self.sandbox.give(self._home)  # workers may write their HOME, nothing else of ours
        if self.registry is None:
            self.registry = SQLiteRegistry(self.config.registry_path)
        if self.builder is None and self.role == "primary":
            from .build import Builder
            self.builder = Builder(self.config.data_dir)
        await self._open_services()
        factory = self._supervisor_factory or Supervisor
        extra = {"service_handler": self._service_handler or self._call_service}
        if self._supervisor_factory is None:
            extra["on_request_done"] = self._request_done
            extra["sandbox"] = self.sandbox
            extra["on_response"] = self.samples.record
        self.supervisor = factory(on_event=self._on_supervisor_event,
                                  base_env=self.worker_env(), max_frame=self.config.max_frame,
                                  **extra)
        app = make_dataplane_app(self.supervisor, api_document=self.openapi_document,
                                 api_document_path=self.config.openapi_path)
        self._inflight = app.inflight
        if dataplane_sockets is None:
            dataplane_sockets = bind_dataplane(self.config.host, self.config.port)
        self._dataplane_server = serve_dataplane(app, sockets=list(dataplane_sockets))
        port = dataplane_sockets[0].getsockname()[1]
        self.config.port = port
        self.url = self.config.public_url or f"http://{_url_host(self.config.host)}:{port}"
        self.started = time.time()
        await self.restore()

    async def restore(self) -> None:
        """Bring back every endpoint whose desired state is running (primary at start)."""
        for record in self.registry.endpoints():
            try:
                if self.role == "follower":
                    await self._follow(record)
                else:
                    await self._restore(record)
            except Exception:
                log.exception("restoring endpoint %s failed", record.name)

    async def _restore(self, record: EndpointRecord) -> None:
        if record.desired != "running":
            self._register_stopped(record)
            self._set_state(record.name, "stopped", "stopped by the user")
            return
        revision = self._live(record)
        if revision is not None and _binary_exists(revision.binary):
            log.info("restoring %s from revision %d (%s)", record.name, revision.number,
                     revision.binary)
            await self._activate(record, revision)
            return
        if not record.source:
            self._set_state(record.name, "deploy_failed", "no binary and no source to build")
            return
        log.info("restoring %s: cached binary missing, rebuilding", record.name)
        await self._build_and_deploy(record.name, spawn_release=False)

    async def stop(self) -> None:
        """Stop accepting, drain in-flight requests, stop every worker."""
        if self._stopping:
            return
        self._stopping = True
        if self._dataplane_server is not None:
            self._dataplane_server.stop()
        if self._inflight is not None and self._inflight.inflight:
            log.info("draining %d in-flight request(s)", self._inflight.inflight)
            if not await self._inflight.wait_idle(self.config.drain_timeout):
                log.warning("drain timeout: %d request(s) still in flight",
                            self._inflight.inflight)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.supervisor is not None:
            await self.supervisor.shutdown()
        if self.services is not None:
            await self.services.close()
        aclose = getattr(self.builder, "aclose", None)
        if aclose is not None:
            await aclose()
        if self._dataplane_server is not None:
            await self._dataplane_server.close_all_connections()
        self.events.close()
        if self.registry is not None:
            self.registry.close()
        if self._home:
            shutil.rmtree(self._home, ignore_errors=True)

    @property
    def inflight(self) -> int:
        return self._inflight.inflight if self._inflight else 0

    # -- queries -------------------------------------------------------------------------

    def endpoint_url(self, record: EndpointRecord) -> str:
        path = record.path
        if "{" in path:
            return self.url + path
        return self.url + path

    def view(self, record: EndpointRecord) -> dict[str, Any]:
        """An endpoint as the admin API shows it (never the source; use /source)."""
        data = record.to_dict()
        data.pop("source", None)
        data["url"] = self.endpoint_url(record)
        data["services"] = self.registry.bindings(record.name)
        runtime = self._supervisor_state(record.name)
        if runtime is not None:
            data["runtime"] = runtime
        build = self.last_builds.get(record.name)
        if build is not None:
            data["last_build"] = {k: build.get(k) for k in
                                  ("ok", "status", "cached", "duration", "profile",
                                   "content_hash")}
        return data

    def _supervisor_state(self, name: str) -> Any:
        if self.supervisor is None:
            return None
        try:
            state = self.supervisor.state(name)
        except Exception:
            return None
        return _jsonable(state)

    def metrics(self, name: str) -> dict:
        self.registry.get_endpoint(name)
        try:
            return _jsonable(self.supervisor.metrics(name)) or {}
        except KeyError:
            return {}

    def logs(self, name: str, tail: int | None = 200, since: int | None = None) -> list[dict]:
        self.registry.get_endpoint(name)
        try:
            lines = self.supervisor.logs(name, tail)
        except KeyError:
            return []
        out = [_log_line(line) for line in lines or []]
        if since is not None:
            out = [line for line in out if line.get("seq", 0) > since]
        return out

    def openapi_document(self, server_url: str | None = None) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the live endpoints, with real examples."""
        from .openapi.export import gateway_document
        return gateway_document(self, server_url)

    def stats(self) -> dict[str, Any]:
        records = self.registry.endpoints()
        states = collections.Counter(r.state for r in records)
        return {"version": __version__, "uptime": time.time() - self.started,
                "pid": os.getpid(), "processes": self.config.processes,
                "endpoints": len(records), "states": dict(states),
                "services": len(self.registry.services()),
                "inflight": self.inflight, "event_subscribers": self.events.subscribers,
                "url": self.url}

    # -- deploy flow ---------------------------------------------------------------------

    def validate(self, spec: EndpointSpec) -> EndpointSpec:
        from .router import Route
        if not NAME_RE.match(spec.name):
            raise DeployRejected(400, "invalid_name",
                                 f"endpoint name {spec.name!r} must be 1-64 letters, digits, "
                                 "'_', '-' or '.', starting with a letter or digit")
        spec.method = spec.method.upper()
        if spec.method not in METHODS:
            raise DeployRejected(400, "invalid_method",
                                 f"method must be one of {', '.join(METHODS)}")
        try:
            Route(spec.name, spec.method, spec.path, spec.domain)
        except ValueError as exc:
            raise DeployRejected(400, "invalid_route", str(exc)) from None
        options = dict(DEFAULT_OPTIONS) | {k: v for k, v in spec.options.items()
                                           if v is not None}
        _check_options(options)
        spec.options = options
        known = set(self.services.names()) if self.services is not None else set()
        for service in spec.services:
            if service in known:
                continue
            try:
                self.registry.get_service(service)
            except NotFoundError:
                raise DeployRejected(400, "unknown_service",
                                     f"no service named {service!r}") from None
        self._check_route_conflict(spec)
        return spec

    def _check_route_conflict(self, spec: EndpointSpec) -> None:
        for other in self.registry.endpoints():
            if other.name == spec.name:
                continue
            if (other.method == spec.method and other.domain == spec.domain
                    and _pattern_shape(other.path) == _pattern_shape(spec.path)):
                raise DeployRejected(
                    409, "route_conflict",
                    f"endpoint {other.name!r} already answers {other.method} {other.path}"
                    + (f" on {other.domain}" if other.domain else ""))

    async def put_endpoint(self, spec: EndpointSpec, *, wait: bool = True) -> dict[str, Any]:
        """Create or update an endpoint, then build and deploy it.

        With ``wait`` returns ``{"endpoint", "build"}`` after the deploy finished (either
        way); otherwise starts the work in the background and returns the current state.
        """
        self._require_primary()
        spec = self.validate(spec)
        existing = self.registry.find_endpoint(spec.name)
        record = EndpointRecord(
            name=spec.name, method=spec.method, path=spec.path, domain=spec.domain,
            source=spec.source, deps=list(spec.deps), options=spec.options,
            origin=spec.origin, desired="running")
        record = self.registry.put_endpoint(record)
        self.registry.set_bindings(spec.name, self._stored_services(spec.services))
        if existing is None:
            self.events.publish("endpoint_created", endpoint=spec.name)
        return await self.build(spec.name, wait=wait)

    async def build(self, name: str, *, wait: bool = True) -> dict[str, Any]:
        """Build the endpoint's current source and deploy it (the deploy flow)."""
        self._require_primary()
        self.registry.get_endpoint(name)
        task = self._spawn(self._build_and_deploy(name, spawn_release=True))
        if wait:
            return await task
        await asyncio.sleep(0)  # let the task record "building" before we answer
        return {"endpoint": self.view(self.registry.get_endpoint(name)), "build": None}

    async def _build_and_deploy(self, name: str, *, spawn_release: bool,
                                profile: str | None = None) -> dict[str, Any]:
        async with self._lock(name):
            record = self.registry.get_endpoint(name)
            profile = profile or record.options.get("profile", "dev")
            serving = self._live(record)
            keeps = (f"; revision {serving.number} keeps serving"
                     if serving and record.state in ("running", "building", "starting",
                                                     "build_failed", "deploy_failed",
                                                     "crash_looping") else "")
            self._set_state(name, "building", f"building ({profile}){keeps}")
            result = await self._run_build(record, profile)
            build = _build_dict(result, record.source)
            self.last_builds[name] = build
            revision = self.registry.add_revision(
                name, content_hash=result.content_hash,
                binary=str(result.binary) if result.ok and result.binary else None,
                profile=profile, build_status=result.status,
                diagnostics=[_jsonable(d) for d in result.diagnostics or []])
            build["revision"] = revision.number
            if result.status in ("cancelled", "superseded") and serving is not None \
                    and record.state != "stopped" and keeps:
                self._set_state(name, "running", f"build {result.status}{keeps}")
                return {"endpoint": self.view(self.registry.get_endpoint(name)),
                        "build": build}
            if not result.ok:
                self._set_state(name, "build_failed", _build_reason(result) + keeps)
                return {"endpoint": self.view(self.registry.get_endpoint(name)),
                        "build": build}
            record = self.registry.get_endpoint(name)
            if record.desired != "running":
                self._set_state(name, "stopped", "built; stopped by the user")
                return {"endpoint": self.view(record), "build": build}
            ok = await self._activate(record, revision)
            if (ok and spawn_release and profile == "dev" and self.config.release_after_dev):
                self._spawn(self._release_later(name, revision.number))
            return {"endpoint": self.view(self.registry.get_endpoint(name)), "build": build}

    def cancel_build(self, name: str) -> bool:
        """Stop the endpoint's queued or running build (cargo is killed); True if there was
        one. The live revision, if any, keeps serving."""
        self._require_primary()
        self.registry.get_endpoint(name)
        cancel = getattr(self.builder, "cancel", None)
        return bool(cancel(name)) if cancel is not None else False

    async def _release_later(self, name: str, dev_revision: int) -> None:
        """Build release in the background and hot-swap, unless a newer deploy came."""
        record = self.registry.find_endpoint(name)
        if record is None or record.live_revision != dev_revision:
            return
        log.info("building %s in release mode in the background", name)
        self.events.publish("build", endpoint=name, phase="release_queued", profile="release")
        await self._build_and_deploy(name, spawn_release=False, profile="release")

    async def _run_build(self, record: EndpointRecord, profile: str) -> Any:
        name = record.name
        self.events.publish("build", endpoint=name, phase="started", profile=profile)
        loop = asyncio.get_running_loop()

        def on_progress(*args: Any, **kwargs: Any) -> None:
            # The build service may call from its own thread or from the loop.
            event = _progress_fields(args, kwargs)
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                self.events.publish("build", endpoint=name, phase="progress", **event)
            else:
                loop.call_soon_threadsafe(
                    lambda: self.events.publish("build", endpoint=name, phase="progress",
                                                **event))

        if self._build_request is None:
            from .build import BuildRequest
            self._build_request = BuildRequest
        request = self._build_request(name=name, source=record.source, deps=tuple(record.deps),
                                      profile=profile)
        started = time.monotonic()
        try:
            result = await self.builder.build(request, on_progress=on_progress)
        except Exception as exc:
            log.exception("build of %s raised", name)
            result = _FailedBuild(f"the build service failed: {exc}", profile,
                                  time.monotonic() - started)
        self.events.publish("build", endpoint=name, phase="finished", ok=bool(result.ok),
                            status=result.status, cached=bool(getattr(result, "cached", False)),
                            duration=getattr(result, "duration", None), profile=profile,
                            diagnostics=len(result.diagnostics or []))
        return result

    async def _activate(self, record: EndpointRecord, revision: RevisionRecord) -> bool:
        """Hot-load ``revision`` into the supervisor; returns True when it serves."""
        from .supervisor import DeployError

        name = record.name
        self._set_state(name, "starting", f"starting revision {revision.number}")
        try:
            await self.supervisor.deploy(self.endpoint_config(record),
                                         [_abs_binary(self.config.data_dir, revision.binary)],
                                         str(revision.number))
        except DeployError as exc:
            reason = getattr(exc, "reason", str(exc))
            tail = "\n".join(str(t) for t in getattr(exc, "stderr_tail", None) or []) or None
            log.warning("deploy of %s revision %d failed: %s", name, revision.number, reason)
            keeps = (f"; revision {record.live_revision} keeps serving"
                     if record.live_revision and record.live_revision != revision.number
                     and self._supervisor_state(name) else "")
            self._set_state(name, "deploy_failed", f"{reason}{keeps}", tail)
            return False
        self.registry.set_live_revision(name, revision.number)
        self._set_state(name, "running", f"revision {revision.number} serving")
        await self._notify_followers()
        return True

    def endpoint_config(self, record: EndpointRecord) -> Any:
        from .supervisor import EndpointConfig

        options = record.options
        return EndpointConfig(
            name=record.name, method=record.method, path=record.path, domain=record.domain,
            workers=int(options.get("workers", 1)), timeout=float(options.get("timeout", 30.0)),
            max_body=int(options.get("max_body", DEFAULT_OPTIONS["max_body"])),
            drain_timeout=self.config.drain_timeout,
            limits=Limits.from_options(options))

    def worker_env(self) -> dict[str, str]:
        """The whole environment a worker gets: nothing from ours but PATH and LANG.

        No Jupyter tokens, cloud credentials or the admin token; the supervisor adds
        EDGEBOOK_MAX_FRAME, EDGEBOOK_ENDPOINT and EDGEBOOK_REVISION."""
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
               "HOME": self._home or tempfile.gettempdir(),
               "LANG": os.environ.get("LANG", "C.UTF-8"),
               "RUST_BACKTRACE": "1",
               "EDGEBOOK_MAX_FRAME": str(self.config.max_frame)}
        return env

    # -- endpoint operations -------------------------------------------------------------

    async def patch_endpoint(self, name: str, changes: dict[str, Any], *,
                             wait: bool = True) -> dict[str, Any]:
        """Change some fields. Route/options/source changes redeploy; origin alone doesn't."""
        self._require_primary()
        record = self.registry.get_endpoint(name)
        unknown = set(changes) - {"method", "path", "domain", "source", "deps", "workers",
                                  "timeout", "max_body", "profile", "services", "origin",
                                  *LIMIT_OPTIONS}
        if unknown:
            raise DeployRejected(400, "invalid_field",
                                 f"unknown field(s): {', '.join(sorted(unknown))}")
        if set(changes) <= {"origin"}:
            record.origin = changes.get("origin")
            record = self.registry.put_endpoint(record)
            return {"endpoint": self.view(record), "build": None}
        spec = EndpointSpec(
            name=name, method=changes.get("method", record.method),
            path=changes.get("path", record.path),
            source=changes.get("source", record.source),
            deps=list(changes.get("deps", record.deps)),
            domain=changes.get("domain", record.domain),
            options=record.options | {k: changes[k] for k in
                                      ("workers", "timeout", "max_body", "profile",
                                       *LIMIT_OPTIONS) if k in changes},
            services=list(changes.get("services", self.registry.bindings(name))),
            origin=changes.get("origin", record.origin))
        return await self.put_endpoint(spec, wait=wait)

    async def start_endpoint(self, name: str) -> dict[str, Any]:
        self._require_primary()
        async with self._lock(name):
            record = self.registry.set_desired(name, "running")
            revision = self._live(record)
            if revision is not None and _binary_exists(revision.binary):
                await self._activate(record, revision)
                return self.view(self.registry.get_endpoint(name))
        result = await self._build_and_deploy(name, spawn_release=False)
        return result["endpoint"]

    async def stop_endpoint(self, name: str) -> dict[str, Any]:
        self._require_primary()
        async with self._lock(name):
            self.registry.set_desired(name, "stopped")
            await self._supervisor_stop(name)
            self._set_state(name, "stopped", "stopped by the user")
            await self._notify_followers()
            return self.view(self.registry.get_endpoint(name))

    async def restart_endpoint(self, name: str) -> dict[str, Any]:
        """Start fresh workers of the live revision (hot reload: no request is lost)."""
        return await self.start_endpoint(name)

    async def remove_endpoint(self, name: str) -> None:
        self._require_primary()
        async with self._lock(name):
            self.registry.get_endpoint(name)
            await self._supervisor_remove(name)
            self.registry.delete_endpoint(name)
            self.last_builds.pop(name, None)
            self.events.publish("endpoint_removed", endpoint=name)
            await self._notify_followers()
        self._locks.pop(name, None)

    async def put_source(self, name: str, source: str, *, wait: bool = True) -> dict[str, Any]:
        return await self.patch_endpoint(name, {"source": source}, wait=wait)

    # -- services ------------------------------------------------------------------------

    async def _open_services(self) -> None:
        """Create the service manager and give it every stored service (no I/O yet:
        connections are opened on first use)."""
        if self.services is None:
            from .services import ServiceManager
            self.services = ServiceManager(self.config.data_dir)
        await self._sync_services()

    async def _sync_services(self) -> None:
        """Make the service manager match the registry (at start, and on followers)."""
        from .services import ServiceConfigError

        stored = {record.name: record for record in self.registry.services()}
        for name in set(self._service_configs) - set(stored):
            await self.services.remove(name)
            del self._service_configs[name]
        for name, record in stored.items():
            if self._service_configs.get(name) == (record.kind, record.config):
                continue
            try:
                await self.services.put(name, record.kind, record.config)
            except ServiceConfigError as exc:
                log.warning("service %s is not usable: %s", name, exc)
                continue
            self._service_configs[name] = (record.kind, record.config)

    def _stored_services(self, names: Sequence[str]) -> list[str]:
        """The names that need a binding: built-in services (the embedded SQLite database,
        local files) are open to every endpoint unless the user redefined them."""
        stored = {record.name for record in self.registry.services()}
        return [name for name in names if name in stored]

    async def _call_service(self, endpoint: str, call: dict[str, Any]) -> dict[str, Any]:
        """A worker's service call, checked against the endpoint's bindings."""
        return await self.services.call(endpoint, set(self.registry.bindings(endpoint)), call)

    def _request_done(self, request_id: str) -> None:
        if self.services.has_open_transaction(request_id):
            self._spawn(self.services.release_request(request_id))

    async def put_service(self, name: str, kind: str, config: dict[str, Any]) -> ServiceRecord:
        from .services import ServiceConfigError

        self._require_primary()
        if not NAME_RE.match(name):
            raise DeployRejected(400, "invalid_name", f"service name {name!r} is not valid")
        if not isinstance(config, dict):
            raise DeployRejected(400, "invalid_config", "service config must be an object")
        try:
            self.services.check(name, kind, config)
        except ServiceConfigError as exc:
            raise DeployRejected(400, "invalid_config", str(exc)) from None
        record = self.registry.put_service(ServiceRecord(name=name, kind=kind, config=config))
        await self._sync_services()
        await self._notify_followers()
        return record

    async def delete_service(self, name: str) -> None:
        self._require_primary()
        self.registry.delete_service(name)
        await self._sync_services()
        await self._notify_followers()

    def describe_services(self) -> list[dict[str, Any]]:
        """Every usable service, stored or built in, with secrets masked."""
        shown = [record.to_public_dict() for record in self.registry.services()]
        stored = {s["name"] for s in shown}
        for name in self.services.names():
            if name not in stored:
                shown.append({**self.services.describe(name), "builtin": True})
        return shown

    async def test_service(self, name: str) -> dict[str, Any]:
        if name not in self.services.names():
            self.registry.get_service(name)  # NotFoundError: 404
            return {"ok": False, "error": {"kind": "bad_request",
                                           "message": f"service {name!r} is not usable"}}
        return await self.services.test(name)

    # -- followers (multi-process) -------------------------------------------------------

    async def reconcile(self) -> None:
        """Follower: make the local supervisor and services match the registry."""
        await self._sync_services()
        wanted = {r.name: r for r in self.registry.endpoints()}
        for name in list(self._known_names()):
            if name not in wanted:
                await self._supervisor_remove(name)
        for record in wanted.values():
            try:
                await self._follow(record)
            except Exception:
                log.exception("follower could not sync endpoint %s", record.name)

    async def _follow(self, record: EndpointRecord) -> None:
        from .supervisor import DeployError

        name = record.name
        if record.desired != "running" or record.live_revision is None:
            await self._supervisor_stop(name)
            self._register_stopped(record)
            return
        current = self._local_revision(name)
        running = self._local_running(name)
        if current == str(record.live_revision) and running:
            return
        revision = self.registry.get_revision(name, record.live_revision)
        if not _binary_exists(revision.binary):
            log.warning("follower: binary of %s revision %d is missing", name, revision.number)
            return
        try:
            await self.supervisor.deploy(self.endpoint_config(record),
                                         [_abs_binary(self.config.data_dir, revision.binary)],
                                         str(revision.number))
        except DeployError as exc:
            log.warning("follower: deploy of %s failed: %s", name,
                        getattr(exc, "reason", exc))

    def _known_names(self) -> list[str]:
        return list(self.supervisor.names())

    def _local_revision(self, name: str) -> str | None:
        state = self._supervisor_state(name)
        if isinstance(state, dict):
            return state.get("revision")
        return None

    def _local_running(self, name: str) -> bool:
        state = self._supervisor_state(name)
        return isinstance(state, dict) and state.get("state") in ("running", "crash_looping")

    async def _notify_followers(self) -> None:
        if self.followers is not None:
            await self.followers.sync()

    # -- helpers -------------------------------------------------------------------------

    def _require_primary(self) -> None:
        if self.role != "primary":
            raise GatewayError(409, "not_primary", "this gateway process only serves")

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, (GatewayError, RegistryError)):
                log.error("background task failed", exc_info=exc)

    def _live(self, record: EndpointRecord) -> RevisionRecord | None:
        if record.live_revision is None:
            return None
        try:
            return self.registry.get_revision(record.name, record.live_revision)
        except NotFoundError:
            return None

    def _set_state(self, name: str, state: str, reason: str | None = None,
                   stderr_tail: str | None = None) -> None:
        if self.role != "primary":
            return
        try:
            record = self.registry.set_state(name, state, reason, stderr_tail)
        except NotFoundError:
            return
        self.events.publish("state", endpoint=name, state=state, reason=reason,
                            stderr_tail=stderr_tail, revision=record.live_revision)

    def _on_supervisor_event(self, event: dict) -> None:
        """The supervisor reports state changes of its own (crash loops, recoveries).

        The registry follows the supervisor between ``running`` and ``crash_looping``; the
        gateway's own deploy flow sets every other state. Every supervisor event is also
        published on the bus as a ``runtime`` event.
        """
        name = event.get("endpoint")
        state = event.get("state")
        if self.role == "primary" and name and event.get("type") == "state" \
                and state in ("crash_looping", "running"):
            record = self.registry.find_endpoint(name)
            if record is not None and record.desired == "running" \
                    and record.state in ("running", "crash_looping") and record.state != state:
                tail = self._supervisor_state(name) or {}
                self._set_state(name, state, event.get("reason"),
                                "\n".join(tail.get("stderr_tail") or []) or None)
        fields = {k: _jsonable(v) for k, v in event.items() if k not in ("type", "time")}
        self.events.publish("runtime", event=event.get("type"), **fields)

    def _register_stopped(self, record: EndpointRecord) -> None:
        """A stopped endpoint the supervisor does not know yet (after a restart) answers
        503, as while the gateway was up, rather than 404."""
        from .supervisor import DeployError

        register = getattr(self.supervisor, "register_stopped", None)
        revision = self._live(record)
        if register is None or revision is None or not revision.binary:
            return
        try:
            register(self.endpoint_config(record),
                     [_abs_binary(self.config.data_dir, revision.binary)], str(revision.number))
        except DeployError as exc:
            log.warning("stopped endpoint %s cannot be routed: %s", record.name, exc)

    async def _supervisor_stop(self, name: str) -> None:
        try:
            await self.supervisor.stop(name)
        except KeyError:
            pass

    async def _supervisor_remove(self, name: str) -> None:
        self.samples.forget(name)
        try:
            await self.supervisor.remove(name)
        except KeyError:
            pass


class _FailedBuild:
    """A build result for a build service that raised instead of answering."""

    def __init__(self, message: str, profile: str, duration: float):
        self.ok = False
        self.status = "error"
        self.binary = None
        self.content_hash = None
        self.cached = False
        self.diagnostics = [{"level": "error", "message": message}]
        self.duration = duration
        self.profile = profile
        self.log = message

    def to_dict(self) -> dict:
        return {"ok": False, "status": self.status, "binary": None, "content_hash": None,
                "cached": False, "diagnostics": self.diagnostics, "duration": self.duration,
                "profile": self.profile, "log": self.log}


# -- free functions ---------------------------------------------------------------------------

def bind_dataplane(host: str, port: int) -> list[socket.socket]:
    """Bind the data-plane socket(s) with SO_REUSEPORT so sibling processes can share it."""
    from tornado.netutil import bind_sockets
    return bind_sockets(port, address=host, reuse_port=True)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _pattern_shape(path: str) -> str:
    return re.sub(r"\{[^/]*\}", "{}", path)


def _check_options(options: dict[str, Any]) -> None:
    def bad(message: str) -> DeployRejected:
        return DeployRejected(400, "invalid_option", message)

    workers = options["workers"]
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise bad("workers must be an integer from 1 to 64")
    timeout = options["timeout"]
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
        raise bad("timeout must be a number of seconds, above 0 and at most 3600")
    max_body = options["max_body"]
    if not isinstance(max_body, int) or isinstance(max_body, bool) or max_body < 0:
        raise bad("max_body must be a non-negative integer (bytes)")
    if options["profile"] not in PROFILES:
        raise bad(f"profile must be one of {', '.join(PROFILES)}")
    try:
        Limits.from_options(options)
    except ValueError as exc:
        raise bad(str(exc)) from None


def _owner_only(path: str) -> None:
    try:
        if os.stat(path).st_uid == os.geteuid():
            os.chmod(path, 0o700)
    except OSError as exc:
        log.warning("cannot make %s private: %s", path, exc)


def _binary_exists(binary: str | None) -> bool:
    return bool(binary) and os.path.isfile(binary) and os.access(binary, os.X_OK)


def _abs_binary(data_dir: str, binary: str | None) -> str:
    assert binary is not None
    return binary if os.path.isabs(binary) else os.path.join(data_dir, binary)


def _build_reason(result: Any) -> str:
    errors = [d for d in result.diagnostics or []
              if _field(d, "level") in ("error", "error: internal compiler error")]
    if errors:
        first = _field(errors[0], "message") or "error"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"build failed: {first}{more}"
    return f"build failed ({result.status})"


def _build_dict(result: Any, source: str) -> dict[str, Any]:
    data = result.to_dict() if hasattr(result, "to_dict") else dict(vars(result))
    data = _jsonable(data)
    data.pop("binary", None)  # a server-side path; clients have no use for it
    if not result.ok and result.diagnostics:
        try:
            from .build import render_diagnostics
            data["rendered"] = render_diagnostics(result.diagnostics, source)
        except Exception:
            log.warning("rendering diagnostics failed", exc_info=True)
            data["rendered"] = "\n".join(str(_field(d, "message")) for d in result.diagnostics)
    return data


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    for attr in ("to_dict", "as_dict", "_asdict"):
        method = getattr(value, attr, None)
        if callable(method):
            return _jsonable(method())
    if hasattr(value, "value"):  # enums
        return _jsonable(value.value)
    return str(value)


def _log_line(line: Any) -> dict:
    data = _jsonable(line)
    if isinstance(data, str):
        return {"text": data}
    return data


def _progress_fields(args: tuple, kwargs: dict) -> dict[str, Any]:
    """A build service progress report as event fields: its ``phase`` becomes ``stage``
    (the event's own ``phase`` is ``progress``) and its ``name`` is the event's endpoint."""
    if kwargs:
        data = dict(kwargs)
    elif len(args) == 1 and isinstance(args[0], dict):
        data = dict(args[0])
    else:
        data = {"message": " ".join(str(a) for a in args)}
    data = {k: _jsonable(v) for k, v in data.items()}
    if "phase" in data:
        data["stage"] = data.pop("phase")
    data.pop("name", None)
    data.pop("endpoint", None)
    data.pop("type", None)
    return data
