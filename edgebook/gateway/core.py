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
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from tornado.httpserver import HTTPServer

from .. import endpoint_options, paths
from .._version import __version__
from ..build.builder import Builder, BuildRequest
from ..discovery import url_host
from ..artifacts import ArtifactError
from ..errors import GatewayError
from ..openapi.export import gateway_document
from ..openapi.samples import SampleStore
from ..protocol import DEFAULT_MAX_FRAME
from ..sandbox import Limits, Sandbox
from ..services import ServiceManager
from .builds import FailedBuild, build_dict, build_reason, feature_hint, progress_fields
from .dataplane import make_dataplane_app, serve_dataplane
from .eventloop import event_loop_name
from .events import EventBus
from .limits import check_budget, explain_failure
from .metrics import merge_shares
from .registry import (
    SERVING_STATES,
    EndpointRecord,
    NotFoundError,
    Registry,
    RegistryError,
    RevisionRecord,
    SQLiteRegistry,
)
from .service_sync import ServiceBindings
from .spec import (
    DeployRejected,
    EndpointSpec,
    check_fields,
    check_spec,
    route_shape,
)
from .supervisor import DeployError, EndpointConfig, Supervisor
from .tracing import Tracing
from .views import jsonable, log_line

log = logging.getLogger(__name__)


def unchanged(result: Any, serving_hash: str | None) -> bool:
    """Whether a build changes nothing that is served: a cache hit of the binary that serves
    now (a cache hit of an older revision's source is a change, just one without a compile)."""
    return bool(getattr(result, "ok", False) and getattr(result, "cached", False)
                and serving_hash is not None
                and getattr(result, "content_hash", None) == serving_hash)


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
    #: Development mode (gateways started by a notebook): handlers' 5xx details reach the
    #: client (EDGEBOOK_EXPOSE_ERRORS in the worker's environment, read by the SDK).
    dev: bool = False
    #: Server-Timing on every response (phases and service calls, see timing.py): on in
    #: development unless set; with it off, only requests that present the admin token in
    #: ``X-Edgebook-Timing`` get it.
    server_timing: bool | None = None
    #: Scale-out (cluster.py): a ``postgresql://`` registry shared with other gateways
    #: (None: the SQLite file in the data dir), where built binaries are stored by digest
    #: (``s3://bucket/prefix``, a directory; None: ``<data dir>/artifacts``), the S3
    #: endpoint for servers other than AWS, and what this process does: ``all`` (serve and
    #: build), ``gateway`` (serve only: needs no toolchain) or ``builder`` (build only).
    registry_url: str | None = None
    artifacts_url: str | None = None
    artifacts_endpoint: str | None = None
    role: str = "all"

    @property
    def clustered(self) -> bool:
        return bool(self.registry_url) and not self.registry_url.startswith("sqlite")

    @property
    def timing_header(self) -> bool:
        return self.dev if self.server_timing is None else self.server_timing

    @property
    def registry_path(self) -> str:
        return paths.registry_path(self.data_dir)


# -- the gateway -----------------------------------------------------------------------------

class Gateway:
    """Registry + builder + supervisor + data plane for one gateway process.

    Dependencies may be passed in (tests pass a fake builder); by default ``start``
    creates the SQLite registry, the build service and the supervisor for ``config``.
    """

    def __init__(self, config: GatewayConfig, *, registry: Registry | None = None,
                 builder: Any = None, supervisor_factory: Callable[..., Any] | None = None,
                 service_handler: Callable[..., Any] | None = None,
                 build_request: Callable[..., Any] = BuildRequest, role: str = "primary",
                 services: ServiceManager | None = None, sandbox: Sandbox | None = None):
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
        self._service_manager = services  # created at start unless given
        self.services: ServiceBindings | None = None  # set at start
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
        self._last_activity = time.monotonic()
        self._tracing: Tracing | None = None
        self._dataplane: Any = None
        #: The data plane's document (no recorded values) and the registry generation it
        #: was built at: rebuilt only when the registry changes, not on every request.
        self._public_document: tuple[int, dict[str, Any]] | None = None
        self.admin_url = ""  # set by whoever serves the admin API
        self.cluster: Any = None  # a ClusterNode with a PostgreSQL registry (cluster.py)
        self._builder_loop: Any = None

    def touch(self) -> None:
        """Note activity (a data-plane request answered, an admin call) for ``idle_for``."""
        self._last_activity = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last activity; 0 while a data-plane request is in flight."""
        if self._inflight is not None and self._inflight.inflight:
            return 0.0
        return time.monotonic() - self._last_activity

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, dataplane_sockets: Sequence[socket.socket] | None = None) -> None:
        """Open the registry, listen on the data plane, restore endpoints."""
        os.makedirs(self.config.data_dir, mode=0o700, exist_ok=True)
        _owner_only(self.config.data_dir)  # the token, the registry, every handler's source
        self._home = tempfile.mkdtemp(prefix="edgebook-home-")
        if self._supervisor_factory is None and self.sandbox is None:
            self.sandbox = Sandbox.default()
        if self.sandbox is not None:
            self.sandbox.give(self._home)  # workers may write their HOME, nothing else of ours
            self.sandbox.hide_from_workers(self.config.data_dir)  # the token, the registry
        if self.registry is None and self.config.clustered:
            await self._join_cluster()
        if self.registry is None:
            self.registry = SQLiteRegistry(self.config.registry_path)
        if self.builder is None and self.role == "primary" and self.config.role != "gateway":
            self.builder = Builder(self.config.data_dir)
        if self.cluster is not None and self.config.role in ("all", "builder"):
            from .cluster import BuilderLoop
            self._builder_loop = BuilderLoop(self.cluster.queue, self.builder,
                                             self.cluster.cache, registry=self.registry,
                                             nodes=self.cluster.nodes)
        self.services = ServiceBindings(
            self.registry, self._service_manager or ServiceManager(self.config.data_dir),
            changed=self.notify_followers)
        await self.services.sync()
        factory = self._supervisor_factory or Supervisor
        extra = {"service_handler": self._service_handler or self.services.call}
        if self._supervisor_factory is None:
            extra["on_request_done"] = self._request_done
            extra["sandbox"] = self.sandbox
            extra["on_response"] = self.samples.record
        self.supervisor = factory(on_event=self._on_supervisor_event,
                                  base_env=self.worker_env(), max_frame=self.config.max_frame,
                                  **extra)
        app = make_dataplane_app(self.supervisor, api_document=self.public_openapi_document,
                                 api_document_path=self.config.openapi_path)
        self._inflight = app.inflight
        self._dataplane = app
        app.on_exchange = lambda _exchange: self.touch()  # an answered request is activity
        app.server_timing = self.config.timing_header
        app.timing_token = self.token  # X-Edgebook-Timing: <admin token> asks for it
        self._tracing = app.tracing = Tracing.from_env()
        timings = getattr(self.supervisor, "timings", None)
        if timings is not None:  # service calls are counted against their request
            self.services.timings = timings
        if dataplane_sockets is None:
            dataplane_sockets = bind_dataplane(self.config.host, self.config.port,
                                               join=self.role == "follower")
        self._dataplane_server = serve_dataplane(app, sockets=list(dataplane_sockets))
        port = dataplane_sockets[0].getsockname()[1]
        self.config.port = port
        self.url = self.config.public_url or f"http://{url_host(self.config.host)}:{port}"
        self.started = time.time()
        if self.cluster is not None:
            self.cluster.start()  # serves what the registry says is live, fetched by digest
            if self._builder_loop is not None:
                self._builder_loop.start()
        elif self.role == "primary":
            await self.restore()

    async def _join_cluster(self) -> None:
        """Open the shared registry, the build queue and the artifact store (cluster.py)."""
        from ..artifacts import ArtifactCache, store_from_url
        from .buildqueue import PostgresBuildQueue
        from .cluster import ClusterNode
        from .nodes import NodeTable
        from .pgregistry import PostgresRegistry
        store = store_from_url(self.config.artifacts_url, data_dir=self.config.data_dir,
                               endpoint_url=self.config.artifacts_endpoint)
        cache = ArtifactCache(store, os.path.join(self.config.data_dir, "artifact-cache"))
        node = ClusterNode(self, None, cache, serves=self.config.role != "builder")
        self.registry = await PostgresRegistry.open(self.config.registry_url,
                                                    on_change=node.changed)
        node.queue = await PostgresBuildQueue.open(self.config.registry_url,
                                                   pool=self.registry.pool)
        node.nodes = NodeTable(self.registry.pool)
        self.cluster = node

    async def cluster_view(self) -> dict[str, Any]:
        """Every gateway sharing this registry: the version and revisions each serves."""
        if self.cluster is None or self.cluster.nodes is None:
            raise GatewayError(404, "not_clustered",
                               "this gateway does not share a registry (serve --registry)")
        try:
            gateways = await self.cluster.nodes.list()
        except Exception as exc:
            raise GatewayError(503, "registry_unavailable",
                               f"cannot read the gateways' reports: {exc}") from None
        return {"registry_version": self.registry.generation(), "this": self.cluster.node_id,
                "gateways": gateways}

    def ready(self) -> tuple[bool, str]:
        """What ``/readyz`` answers: False while starting or stopping, and in a cluster
        until this gateway serves the registry's live revisions."""
        if self._stopping:
            return False, "shutting down"
        if not self.started:
            return False, "starting"
        if self.cluster is not None:
            return self.cluster.ready()
        return True, "serving"

    async def restore(self) -> None:
        """Bring back every endpoint whose desired state is running (primary at start;
        followers mirror the registry instead, see followers.py)."""
        for record in self.registry.endpoints():
            try:
                await self._restore(record)
            except Exception:
                log.exception("restoring endpoint %s failed", record.name)

    async def _restore(self, record: EndpointRecord) -> None:
        if record.desired != "running":
            self.register_stopped(record)
            await self._set_state(record.name, "stopped", "stopped by the user")
            return
        revision = self._live(record)
        if revision is not None and binary_exists(revision.binary):
            log.info("restoring %s from revision %d (%s)", record.name, revision.number,
                     revision.binary)
            await self._activate(record, revision)
            return
        if not self.live_source(record)[0]:
            await self._set_state(record.name, "deploy_failed", "no binary and no source to build")
            return
        log.info("restoring %s: cached binary missing, rebuilding", record.name)
        await self._build_and_deploy(record.name, spawn_release=False, from_live=True)

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
        if self.cluster is not None:
            await self.cluster.stop()
        if self._builder_loop is not None:
            await self._builder_loop.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.supervisor is not None:
            await self.supervisor.shutdown()
        if self.services is not None:
            await self.services.close()
        if self._tracing is not None:
            await asyncio.to_thread(self._tracing.shutdown)  # flushes queued spans
        if self.builder is not None:
            await self.builder.aclose()
        if self._dataplane_server is not None:
            await self._dataplane_server.close_all_connections()
        self.events.close()
        if self.cluster is not None:
            await self.cluster.queue.aclose()
            await self.cluster.cache.store.aclose()
        if self.registry is not None:
            await self.registry.aclose()
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
        runtime = self.supervisor_state(record.name)
        if runtime is not None:
            data["runtime"] = runtime
        if self.cluster is not None and record.name in self.cluster.status:
            data["node"] = self.cluster.status[record.name]  # this gateway's own trouble
        build = self.last_builds.get(record.name)
        if build is not None:
            data["last_build"] = {k: build.get(k) for k in
                                  ("ok", "status", "cached", "duration", "profile",
                                   "content_hash")}
        return data

    def supervisor_state(self, name: str) -> Any:
        if self.supervisor is None:
            return None
        try:
            state = self.supervisor.state(name)
        except Exception:
            return None
        return jsonable(state)

    def metrics(self, name: str) -> dict:
        self.registry.get_endpoint(name)
        try:
            return jsonable(self.supervisor.metrics(name)) or {}
        except KeyError:
            return {}

    def recent_requests(self, name: str) -> list[dict[str, Any]]:
        """The endpoint's last answered requests (newest first) with where their time went
        in the gateway: phases and service calls (operations only)."""
        self.registry.get_endpoint(name)
        recent = self._dataplane.recent.get(name, ()) if self._dataplane is not None else ()
        return [{"time": at, "method": method, "target": target, "status": status,
                 "request_id": request_id, **timing.to_dict()}
                for at, method, target, status, request_id, timing in reversed(recent)]

    def logs(self, name: str, tail: int | None = 200, since: int | None = None) -> list[dict]:
        self.registry.get_endpoint(name)
        try:
            lines = self.supervisor.logs(name, tail)
        except KeyError:
            return []
        out = [log_line(line) for line in lines or []]
        if since is not None:
            out = [line for line in out if line.get("seq", 0) > since]
        return out

    async def all_metrics(self, name: str) -> dict:
        """``metrics`` over every process: with ``--processes N`` the followers' shares
        are added in (see ``merge_shares``)."""
        if self.followers is None:
            return self.metrics(name)
        self.registry.get_endpoint(name)
        try:
            shares = [self.supervisor.metrics(name, latencies=True)]
        except KeyError:
            shares = []
        answers = await self.followers.ask_all("metrics", {"name": name})
        shares += [share for _, share in answers if share]
        return jsonable(merge_shares(shares)) if shares else {}

    async def all_logs(self, name: str, tail: int | None = 200,
                       since: int | None = None) -> list[dict]:
        """``logs`` over every process, by time, each line with its ``process`` (0 is the
        primary). Sequence numbers are per process, so only the primary's lines keep
        ``seq`` (a follower's is ``process_seq``): ``since`` counts the primary's lines and
        returns those."""
        lines = self.logs(name, tail, since)
        if self.followers is None or since is not None:
            return lines
        for line in lines:
            line["process"] = 0
        for index, share in await self.followers.ask_all("logs", {"name": name, "tail": tail}):
            for line in share or []:
                line = log_line(line)
                line["process_seq"] = line.pop("seq", None)
                lines.append({**line, "process": index})
        lines.sort(key=lambda line: line.get("time") or 0)
        return lines[-tail:] if tail else lines

    def openapi_document(self, server_url: str | None = None) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the live endpoints, with real examples (admin API)."""
        return gateway_document(self, server_url)

    def public_openapi_document(self, server_url: str | None = None) -> dict[str, Any]:
        """The data plane's document: routes and source-declared schemas, no recorded
        traffic (anyone who reaches the data plane reads it). Cached per registry change."""
        generation = self.registry.generation()
        if self._public_document is None or self._public_document[0] != generation:
            self._public_document = (generation,
                                     gateway_document(self, "", examples=False))
        document = dict(self._public_document[1])
        url = server_url if server_url is not None else self.url
        if url:
            document["servers"] = [{"url": url}]
        return document

    def stats(self) -> dict[str, Any]:
        records = self.registry.endpoints()
        states = collections.Counter(r.state for r in records)
        return {"version": __version__, "uptime": time.time() - self.started,
                "pid": os.getpid(), "processes": self.config.processes,
                "endpoints": len(records), "states": dict(states),
                "services": len(self.registry.services()),
                "inflight": self.inflight, "event_subscribers": self.events.subscribers,
                "url": self.url, "event_loop": event_loop_name(),
                "registry_version": self.registry.generation(),
                **({"cluster": self.cluster.describe()} if self.cluster is not None else {})}

    # -- deploy flow ---------------------------------------------------------------------

    def validate(self, spec: EndpointSpec) -> EndpointSpec:
        """``spec`` checked (see spec.py) and checked against what exists: services, routes."""
        spec = check_spec(spec)
        known = self.services.known() if self.services is not None else set()
        for service in spec.services:
            if service in known:
                continue
            try:
                self.registry.get_service(service)
            except NotFoundError:
                raise DeployRejected(400, "unknown_service",
                                     f"no service named {service!r}") from None
        self._check_route_conflict(spec)
        serving = self.registry.find_endpoint(spec.name)
        running = (int(serving.options.get("workers", endpoint_options.DEFAULTS["workers"]))
                   if serving is not None and serving.state in SERVING_STATES else 0)
        check_budget(spec.options["workers"], Limits.from_options(spec.options), self.sandbox,
                     spec.name, running=running, processes=self.config.processes)
        return spec

    def _check_route_conflict(self, spec: EndpointSpec) -> None:
        for other in self.registry.endpoints():
            if other.name == spec.name:
                continue
            if (other.method == spec.method and other.domain == spec.domain
                    and route_shape(other.path) == route_shape(spec.path)):
                raise DeployRejected(
                    409, "route_conflict",
                    f"endpoint {other.name!r} already answers {other.method} {other.path}"
                    + (f" on {other.domain}" if other.domain else ""))

    async def put_endpoint(self, spec: EndpointSpec, *, wait: bool = True,
                           expected_version: int | None = None) -> dict[str, Any]:
        """Create or update an endpoint, then build and deploy it.

        With ``wait`` returns ``{"endpoint", "build"}`` after the deploy finished (either
        way); otherwise starts the work in the background and returns the current state.
        An endpoint this call created whose deploy failed (build failed or cancelled,
        workers that would not start) is removed again when ``wait``: a failed first deploy
        leaves nothing behind (``endpoint["removed"]`` says so). A background deploy keeps
        it, so whoever watches the events can still read its build.
        """
        self.require_primary()
        spec = self.validate(spec)
        existing = self.registry.find_endpoint(spec.name)
        record = EndpointRecord(
            name=spec.name, method=spec.method, path=spec.path, domain=spec.domain,
            source=spec.source, deps=list(spec.deps), options=spec.options,
            origin=spec.origin, desired="running")
        record = await self.registry.put_endpoint(record, expected_version=expected_version)
        await self.registry.set_bindings(spec.name, self.services.to_bind(spec.services))
        self.services.forget(spec.name)
        if existing is None:
            self.events.publish("endpoint_created", endpoint=spec.name)
        result = await self.build(spec.name, wait=wait)
        endpoint = result["endpoint"]
        if wait and existing is None and endpoint.get("live_revision") is None \
                and endpoint.get("state") in ("build_failed", "deploy_failed"):
            await self.remove_endpoint(spec.name)
            endpoint["removed"] = True
            endpoint["reason"] = (f"{endpoint.get('reason') or endpoint['state']}; "
                                  f"{spec.name} is not kept: it never served")
        return result

    async def build(self, name: str, *, wait: bool = True) -> dict[str, Any]:
        """Build the endpoint's current source and deploy it (the deploy flow)."""
        self.require_primary()
        self.registry.get_endpoint(name)
        task = self._spawn(self._build_and_deploy(name, spawn_release=True))
        if wait:
            return await task
        await asyncio.sleep(0)  # let the task record "building" before we answer
        return {"endpoint": self.view(self.registry.get_endpoint(name)), "build": None}

    async def _build_and_deploy(self, name: str, *, spawn_release: bool,
                                profile: str | None = None,
                                from_live: bool = False) -> dict[str, Any]:
        """Build and deploy the endpoint's submitted source, or with ``from_live`` the
        source of the revision that is live (a restart whose binary is gone rebuilds what
        served, not a later edit that failed)."""
        async with self._flow(name):
            record = self.registry.get_endpoint(name)
            if from_live:
                record.source, record.deps, _ = self.live_source(record)
            profile = profile or record.options.get("profile", "dev")
            serving = self._live(record)
            keeps = (f"; revision {serving.number} keeps serving"
                     if serving and record.state in ("building", "starting", "build_failed",
                                                     "deploy_failed", "crash_looping",
                                                     *SERVING_STATES) else "")
            await self._set_state(name, "building", f"building ({profile}){keeps}")
            result = await self._run_build(record, profile,
                                           serving.content_hash if serving else None)
            build = build_dict(result, record.source)
            build["unchanged"] = unchanged(result, serving.content_hash if serving else None)
            hint = feature_hint(result, record.deps)
            if hint:
                build["hint"] = hint
            self.last_builds[name] = build
            revision = await self.registry.add_revision(
                name, content_hash=result.content_hash,
                binary=str(result.binary) if result.ok and result.binary else None,
                profile=profile, build_status=result.status,
                diagnostics=[jsonable(d) for d in result.diagnostics or []],
                source=record.source, deps=list(record.deps),
                artifact=getattr(result, "artifact", None))
            build["revision"] = revision.number
            if result.status in ("cancelled", "superseded") and serving is not None \
                    and record.state != "stopped" and keeps:
                await self._set_state(name, "running", f"build {result.status}{keeps}")
                return {"endpoint": self.view(self.registry.get_endpoint(name)),
                        "build": build}
            if not result.ok:  # with an older revision serving, it is still running
                await self._set_state(name, "running_build_failed" if keeps else "build_failed",
                                build_reason(result) + keeps)
                return {"endpoint": self.view(self.registry.get_endpoint(name)),
                        "build": build}
            record = self.registry.get_endpoint(name)
            if record.desired != "running":
                await self._set_state(name, "stopped", "built; stopped by the user")
                return {"endpoint": self.view(record), "build": build}
            ok = await self._activate(record, revision)
            if (ok and spawn_release and profile == "dev" and self.config.release_after_dev):
                self._spawn(self._release_later(name, revision.number))
            return {"endpoint": self.view(self.registry.get_endpoint(name)), "build": build}

    async def cancel_build(self, name: str) -> bool:
        """Stop the endpoint's queued or running build (cargo is killed); True if there was
        one. The live revision, if any, keeps serving. With a shared registry: its jobs in
        the queue, whichever gateway queued them (a builder stops at its next heartbeat)."""
        self.require_primary()
        self.registry.get_endpoint(name)
        if self.cluster is not None:
            return bool(await self.cluster.queue.cancel_open(name, "cancelled by the user"))
        return self.builder.cancel(name)

    async def _release_later(self, name: str, dev_revision: int) -> None:
        """Build release in the background and hot-swap, unless a newer deploy came."""
        record = self.registry.find_endpoint(name)
        if record is None or record.live_revision != dev_revision:
            return
        log.info("building %s in release mode in the background", name)
        self.events.publish("build", endpoint=name, phase="release_queued", profile="release")
        await self._build_and_deploy(name, spawn_release=False, profile="release")

    async def _run_build(self, record: EndpointRecord, profile: str,
                         serving_hash: str | None = None) -> Any:
        """One build, announced as events; ``serving_hash`` is the content hash of the
        revision serving now (a cached result equal to it is ``unchanged``)."""
        name = record.name
        self.events.publish("build", endpoint=name, phase="started", profile=profile)
        loop = asyncio.get_running_loop()

        def on_progress(*args: Any, **kwargs: Any) -> None:
            # The build service may call from its own thread or from the loop.
            event = progress_fields(args, kwargs)
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

        request = self._build_request(name=name, source=record.source, deps=tuple(record.deps),
                                      profile=profile)
        started = time.monotonic()
        try:
            if self.cluster is not None:  # built once, by whichever builder claims it
                result = await self.cluster.build(name, request, on_progress)
            else:
                result = await self.builder.build(request, on_progress=on_progress)
        except Exception as exc:
            log.exception("build of %s raised", name)
            result = FailedBuild(f"the build service failed: {exc}", profile,
                                  time.monotonic() - started)
        self.events.publish("build", endpoint=name, phase="finished", ok=bool(result.ok),
                            status=result.status, cached=bool(getattr(result, "cached", False)),
                            unchanged=unchanged(result, serving_hash),
                            duration=getattr(result, "duration", None), profile=profile,
                            diagnostics=len(result.diagnostics or []))
        return result

    async def _activate(self, record: EndpointRecord, revision: RevisionRecord) -> bool:
        """Hot-load ``revision`` into the supervisor; returns True when it serves."""
        name = record.name
        await self._set_state(name, "starting", f"starting revision {revision.number}")
        try:
            binary = (await self.cluster.binary(revision) if self.cluster is not None
                      else abs_binary(self.config.data_dir, revision.binary))
            await self.supervisor.deploy(self.endpoint_config(record), [binary],
                                         str(revision.number))
        except (DeployError, ArtifactError) as exc:
            reason = getattr(exc, "reason", str(exc))
            tail = "\n".join(str(t) for t in getattr(exc, "stderr_tail", None) or []) or None
            cause = explain_failure(f"{reason}\n{tail or ''}",
                                    Limits.from_options(record.options), self.sandbox,
                                    record.name)
            if cause:
                reason = f"{reason}; {cause}"
            log.warning("deploy of %s revision %d failed: %s", name, revision.number, reason)
            keeps = (f"; revision {record.live_revision} keeps serving"
                     if record.live_revision and record.live_revision != revision.number
                     and self.supervisor_state(name) else "")
            await self._set_state(name, "running_deploy_failed" if keeps else "deploy_failed",
                            f"{reason}{keeps}", tail)
            return False
        await self.registry.set_live_revision(name, revision.number)
        await self._set_state(name, "running", f"revision {revision.number} serving")
        await self.notify_followers()
        return True

    def endpoint_config(self, record: EndpointRecord) -> Any:
        options = endpoint_options.DEFAULTS | record.options
        return EndpointConfig(
            name=record.name, method=record.method, path=record.path, domain=record.domain,
            workers=int(options["workers"]), timeout=float(options["timeout"]),
            max_body=int(options["max_body"]),
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
        if self.config.dev:
            env["EDGEBOOK_EXPOSE_ERRORS"] = "1"
        return env

    # -- endpoint operations -------------------------------------------------------------

    async def patch_endpoint(self, name: str, changes: dict[str, Any], *, wait: bool = True,
                             expected_version: int | None = None) -> dict[str, Any]:
        """Change some fields. Route/options/source changes redeploy; origin alone doesn't."""
        self.require_primary()
        record = self.registry.get_endpoint(name)
        check_fields(changes)
        if set(changes) <= {"origin"}:
            record.origin = changes.get("origin")
            record = await self.registry.put_endpoint(record, expected_version=expected_version)
            return {"endpoint": self.view(record), "build": None}
        spec = EndpointSpec(
            name=name, method=record.method, path=record.path, source=record.source,
            deps=list(record.deps), domain=record.domain, options=dict(record.options),
            services=list(self.registry.bindings(name)), origin=record.origin)
        spec.apply(changes)
        return await self.put_endpoint(spec, wait=wait, expected_version=expected_version)

    async def start_endpoint(self, name: str) -> dict[str, Any]:
        self.require_primary()
        async with self._flow(name):
            record = await self.registry.set_desired(name, "running")
            revision = self._live(record)
            if revision is not None and binary_exists(revision.binary):
                await self._activate(record, revision)
                return self.view(self.registry.get_endpoint(name))
        result = await self._build_and_deploy(name, spawn_release=False, from_live=True)
        return result["endpoint"]

    async def stop_endpoint(self, name: str) -> dict[str, Any]:
        self.require_primary()
        async with self._flow(name):
            await self.registry.set_desired(name, "stopped")
            await self.supervisor_stop(name)
            await self._set_state(name, "stopped", "stopped by the user")
            await self.notify_followers()
            return self.view(self.registry.get_endpoint(name))

    async def restart_endpoint(self, name: str) -> dict[str, Any]:
        """Start fresh workers of the live revision (hot reload: no request is lost)."""
        return await self.start_endpoint(name)

    async def remove_endpoint(self, name: str) -> None:
        self.require_primary()
        async with self._flow(name):
            self.registry.get_endpoint(name)
            await self.supervisor_remove(name)
            if self.builder is not None:  # a serve-only gateway has none
                self.builder.cancel(name)
                self.builder.remove(name)  # its workspace package; binaries stay (by hash)
            await self.registry.delete_endpoint(name)
            self.services.forget(name)
            self.last_builds.pop(name, None)
            self.events.publish("endpoint_removed", endpoint=name)
            await self.notify_followers()
        self._locks.pop(name, None)

    async def put_source(self, name: str, source: str, *, wait: bool = True) -> dict[str, Any]:
        return await self.patch_endpoint(name, {"source": source}, wait=wait)

    async def notify_followers(self) -> None:
        """Primary: every follower process resyncs from the registry (no-op alone)."""
        if self.followers is not None:
            await self.followers.sync()

    def _request_done(self, endpoint: str, request_id: str) -> None:
        if self.services.has_open_transaction(endpoint, request_id):
            self._spawn(self.services.release_request(endpoint, request_id))

    # -- helpers -------------------------------------------------------------------------

    def deploying(self, name: str) -> bool:
        """A deploy flow (build, start, stop, remove) of ``name`` runs in this process."""
        lock = self._locks.get(name)
        return lock is not None and lock.locked()

    def require_primary(self) -> None:
        if self.role != "primary":
            raise GatewayError(409, "not_primary", "this gateway process only serves")

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def _flow(self, name: str):
        """One deploy flow of ``name`` at a time (build, start, stop, remove). In a cluster
        the reconcile it held off runs as soon as it ends (cluster.py skips an endpoint
        whose flow runs here)."""
        try:
            async with self._lock(name):
                yield
        finally:
            if self.cluster is not None:
                self.cluster.changed()

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

    def live_source(self, record: EndpointRecord) -> tuple[str, list[str], int | None]:
        """The source and dependencies the live revision was built from, and its number;
        the submitted ones while nothing is live (or the revision predates stored sources)."""
        revision = self._live(record)
        if revision is not None and revision.source is not None:
            return revision.source, list(revision.deps), revision.number
        return record.source, list(record.deps), None

    def _live(self, record: EndpointRecord) -> RevisionRecord | None:
        if record.live_revision is None:
            return None
        try:
            return self.registry.get_revision(record.name, record.live_revision)
        except NotFoundError:
            return None

    async def _set_state(self, name: str, state: str, reason: str | None = None,
                         stderr_tail: str | None = None) -> None:
        if self.role != "primary":
            return
        try:
            record = await self.registry.set_state(name, state, reason, stderr_tail)
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
            follows = ("running", "crash_looping") if state == "running" else SERVING_STATES \
                + ("crash_looping",)
            if record is not None and record.desired == "running" \
                    and record.state in follows and record.state != state:
                tail = self.supervisor_state(name) or {}
                self._spawn(self._set_state(name, state, event.get("reason"),
                                            "\n".join(tail.get("stderr_tail") or []) or None))
        fields = {k: jsonable(v) for k, v in event.items() if k not in ("type", "time")}
        self.events.publish("runtime", event=event.get("type"), **fields)

    def register_stopped(self, record: EndpointRecord) -> None:
        """A stopped endpoint the supervisor does not know yet (after a restart) answers
        503, as while the gateway was up, rather than 404."""
        register = getattr(self.supervisor, "register_stopped", None)
        revision = self._live(record)
        if register is None or revision is None or not revision.binary:
            return
        try:
            register(self.endpoint_config(record),
                     [abs_binary(self.config.data_dir, revision.binary)], str(revision.number))
        except DeployError as exc:
            log.warning("stopped endpoint %s cannot be routed: %s", record.name, exc)

    async def supervisor_stop(self, name: str) -> None:
        try:
            await self.supervisor.stop(name)
        except KeyError:
            pass

    async def supervisor_remove(self, name: str) -> None:
        self.samples.forget(name)
        try:
            await self.supervisor.remove(name)
        except KeyError:
            pass


# -- free functions ---------------------------------------------------------------------------

def bind_dataplane(host: str, port: int, *, shared: bool = False,
                   join: bool = False) -> list[socket.socket]:
    """Bind the data-plane socket(s); the port belongs to one gateway.

    Alone (the default), bind without SO_REUSEPORT: a port any other process holds is
    refused. ``shared`` (the primary of ``serve --processes N``): first a probe bind without
    SO_REUSEPORT, which fails when anyone holds the port (even another gateway's
    SO_REUSEPORT socket), then the real bind with it. ``join`` (a follower): bind with
    SO_REUSEPORT to the port its primary has just proven free and holds. So two gateways
    never split one port's traffic between them.
    """
    from tornado.netutil import bind_sockets
    if join:
        return bind_sockets(port, address=host, reuse_port=True)
    if not shared:
        return bind_sockets(port, address=host)
    probe = bind_sockets(port, address=host)
    port = probe[0].getsockname()[1]
    for sock in probe:
        sock.close()
    return bind_sockets(port, address=host, reuse_port=True)


def _owner_only(path: str) -> None:
    try:
        if os.stat(path).st_uid == os.geteuid():
            os.chmod(path, 0o700)
    except OSError as exc:
        log.warning("cannot make %s private: %s", path, exc)


def binary_exists(binary: str | None) -> bool:
    return bool(binary) and os.path.isfile(binary) and os.access(binary, os.X_OK)


def abs_binary(data_dir: str, binary: str | None) -> str:
    assert binary is not None
    return binary if os.path.isabs(binary) else os.path.join(data_dir, binary)
