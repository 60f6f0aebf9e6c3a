"""Endpoints and their worker pools: deploy with hot reload, start, stop, state, metrics.

The supervisor owns the routing table and one record per endpoint. A deploy starts the new
revision's pool, waits for every worker's ready frame, switches the endpoint to it in one
synchronous step (no request can see half a switch), then drains the old pool. A revision
that fails to start leaves the old one serving.

Endpoint states: ``created`` (known, never started), ``starting``, ``running``,
``crash_looping``, ``stopped``, ``deploy_failed`` (the last deploy failed and no older
revision is serving). Every change is reported to ``on_event`` as
``{"type": "state", "endpoint", "state", "reason", "revision", "time"}``; a deploy that
fails while an older revision keeps serving is reported as ``{"type": "deploy_failed", ...}``
and a removal as ``{"type": "removed", ...}``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from typing import Awaitable, Callable

from ..errors import GatewayError
from .logring import LogRing
from .metrics import EndpointMetrics
from .pool import CRASH_LOOPING, RUNNING, EndpointConfig, RestartPolicy, WorkerPool
from ..protocol import DEFAULT_MAX_FRAME
from ..router import Match, Route, RouteConflictError, Router
from ..sandbox import Sandbox, SandboxError
from .worker import Outcome, WorkerStartError, settle

__all__ = ["DeployError", "EndpointConfig", "RestartPolicy", "Supervisor", "ENDPOINT_STATES"]

log = logging.getLogger(__name__)

ENDPOINT_STATES = ("created", "starting", "running", "crash_looping", "stopped",
                   "deploy_failed")

#: ``async (endpoint_name, service_call_frame) -> {"ok": ..., "result"|"error": ...}``
ServiceHandler = Callable[[str, dict], Awaitable[dict]]
EventCallback = Callable[[dict], None]
#: ``(endpoint_name, revision, request_frame, response_frame | GatewayError) -> None``
ResponseObserver = Callable[[str, str, dict, "dict | GatewayError"], None]


class DeployError(Exception):
    """A revision could not be started; ``stderr_tail`` holds its last stderr lines."""

    def __init__(self, reason: str, stderr_tail: list[str] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.stderr_tail = list(stderr_tail or [])


async def unbound_service_handler(endpoint: str, call: dict) -> dict:
    """The default: no endpoint is bound to any service."""
    return {"ok": False, "error": {
        "kind": "not_bound",
        "message": f"endpoint {endpoint!r} is not bound to a service named "
                   f"{call.get('service')!r}"}}


def reload_drain_timeout(config: EndpointConfig) -> float:
    """How long a replaced revision may finish its requests: the drain timeout, or the
    request timeout (plus a second for the 504 to be answered) when that is longer."""
    return max(config.drain_timeout, config.timeout + 1.0)


def default_worker_env() -> dict[str, str]:
    """The scrubbed environment every worker starts from: no inherited secrets."""
    return {"PATH": os.defpath, "LANG": "C.UTF-8"}


class _Endpoint:
    """The supervisor's record of one endpoint."""

    def __init__(self, config: EndpointConfig, log_ring: LogRing):
        self.name = config.name
        self.config = config
        self.argv: list[str] | None = None
        self.revision: str | None = None
        self.pool: WorkerPool | None = None
        self.state = "created"
        self.reason: str | None = None
        self.deploy_error: dict | None = None
        self.stderr_tail: list[str] = []
        self.log = log_ring
        self.metrics = EndpointMetrics()
        self.lock = asyncio.Lock()

    def unavailable(self) -> GatewayError:
        if self.state == "starting" or self.state == "created":
            return GatewayError(503, "starting", "the endpoint is starting; try again shortly",
                                headers={"Retry-After": "1"})
        message = ("the endpoint failed to deploy" if self.state == "deploy_failed"
                   else "the endpoint is not running")
        return GatewayError(503, "unavailable", message,
                            log_message=f"{self.name}: {self.state}: {self.reason}",
                            headers={"Retry-After": "5"})


class Supervisor:
    """Runs every endpoint's workers. One per gateway process; all methods run on its loop."""

    def __init__(self, *, service_handler: ServiceHandler = unbound_service_handler,
                 on_event: EventCallback | None = None, base_env: dict[str, str] | None = None,
                 policy: RestartPolicy | None = None, max_frame: int = DEFAULT_MAX_FRAME,
                 log_lines: int = 2000, max_log_line: int = 4096,
                 on_request_done: Callable[[str, str], None] | None = None,
                 on_response: ResponseObserver | None = None,
                 sandbox: Sandbox | None = None):
        self.router = Router()
        # Every worker starts through the sandbox's launcher (limits, user, parent death).
        self._sandbox = sandbox if sandbox is not None else Sandbox.default()
        # Called with (endpoint, request id) once its response (or failure) is known; the
        # services layer uses it to roll back a transaction the request left open.
        self._on_request_done = on_request_done
        # (endpoint, request id) of every request a worker holds: service calls are
        # accepted only for these, so a worker cannot act for a request already answered.
        self._in_flight: set[tuple[str, str]] = set()
        # Called with (endpoint, revision, request frame, response frame or GatewayError)
        # for every request a running revision answered; must be cheap (hot path).
        self._on_response = on_response
        self._endpoints: dict[str, _Endpoint] = {}
        self._service_handler = service_handler
        self._on_event = on_event
        self._base_env = default_worker_env() if base_env is None else dict(base_env)
        self._policy = policy or RestartPolicy()
        self._max_frame = max_frame
        self._log_lines = log_lines
        self._max_log_line = max_log_line
        self._drains: set[asyncio.Task] = set()
        #: Timings of the requests in flight, by request id (see timing.py): the data plane
        #: adds and removes them; pools and service calls mark them.
        self.timings: dict = {}

    # -- the data plane's two calls --------------------------------------------------

    def route(self, method: str, path: str, host: str | None) -> tuple[Match, EndpointConfig]:
        """The matched route and its endpoint's config; GatewayError 404/405 otherwise."""
        match = self.router.match(method, path, host)
        return match, self._endpoints[match.route.name].config

    @property
    def max_frame(self) -> int:
        """The largest frame a worker accepts; no request body may be larger."""
        return self._max_frame

    def dispatch(self, name: str, frame: dict, outcome: Outcome) -> None:
        """Run one request frame on endpoint ``name``: ``outcome(response, None)`` with the
        worker's response frame, or ``outcome(None, GatewayError)`` with the status the
        client should see; called once, possibly from inside this call."""
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            outcome(None, GatewayError(404, "not_found", f"no endpoint named {name!r}"))
            return
        key = (name, frame["request_id"])
        if key in self._in_flight:
            outcome(None, GatewayError(409, "duplicate_request_id",
                                       f"request id {key[1]!r} is already in flight"))
            return
        state = endpoint.state
        if state != "running" and state != "crash_looping":
            error = endpoint.unavailable()
            endpoint.metrics.record(0.0, error.status, error.error_type)
            self._request_done(key)
            outcome(None, error)
            return
        self._in_flight.add(key)
        pool = endpoint.pool
        started = time.perf_counter()

        def finished(response: dict | None, error: Exception | None) -> None:
            elapsed = time.perf_counter() - started
            if error is None:
                status = response.get("status")
                endpoint.metrics.record(elapsed, status if isinstance(status, int) else 502)
            elif isinstance(error, GatewayError):
                endpoint.metrics.record(elapsed, error.status, error.error_type)
            self._in_flight.discard(key)
            self._request_done(key)
            if self._on_response is not None:
                self._observe(name, pool.revision, frame, response or error)
            outcome(response, error)

        pool.dispatch(frame, finished)

    async def handle(self, name: str, frame: dict) -> dict:
        """``dispatch`` as a coroutine: the response frame, or raise GatewayError."""
        future = asyncio.get_running_loop().create_future()
        self.dispatch(name, frame, functools.partial(settle, future))
        return await future

    def _request_done(self, key: tuple[str, str]) -> None:
        """The request (endpoint, id) is answered: the service calls it took are released."""
        if self._on_request_done is not None:
            try:
                self._on_request_done(*key)
            except Exception:
                log.exception("on_request_done callback failed")

    async def _service_call(self, name: str, call: dict) -> dict:
        """A worker's service call, run only while its request is in flight."""
        key = (name, call.get("request_id"))
        if key not in self._in_flight:
            return {"ok": False, "error": {
                "kind": "bad_request",
                "message": f"request {key[1]!r} is not in flight on endpoint {name!r}: "
                           "service calls are refused once the response is sent"}}
        reply = await self._service_handler(name, call)
        if key not in self._in_flight and self._on_request_done is not None:
            self._on_request_done(*key)  # answered meanwhile: release what the call took
        return reply

    def _observe(self, name: str, revision: str, frame: dict,
                 response: dict | GatewayError) -> None:
        try:
            self._on_response(name, revision, frame, response)
        except Exception:
            log.exception("on_response callback failed for %s", name)

    # -- life cycle ------------------------------------------------------------------

    async def deploy(self, config: EndpointConfig, binary_argv: list[str], revision: str, *,
                     wait_drain: bool = True) -> dict:
        """Start ``revision`` and switch ``config.name`` to it (hot reload); returns state.

        Raises DeployError when the route is invalid or taken, or when a worker fails to
        become ready; an older revision, if any, keeps serving. With ``wait_drain`` the
        call returns after the old revision has drained and stopped.
        """
        try:
            route = Route(config.name, config.method, config.path, config.domain)
            self.router.check(route)
        except ValueError as exc:  # RouteConflictError included
            raise DeployError(str(exc)) from None
        endpoint = self._endpoints.get(config.name)
        if endpoint is None:
            endpoint = _Endpoint(config, LogRing(self._log_lines, self._max_log_line))
            self._endpoints[config.name] = endpoint
        async with endpoint.lock:
            old = endpoint.pool
            serving = old is not None and old.state in (RUNNING, CRASH_LOOPING) and (
                endpoint.state in ("running", "crash_looping"))
            if not serving:
                endpoint.config = config
                self.router.set(route)  # so clients see 503 "starting", not 404
                self._set_state(endpoint, "starting", None, revision)
            env = self._worker_env(config, revision)
            try:
                argv = await asyncio.to_thread(functools.partial(
                    self._sandbox.wrap_worker, binary_argv, config.limits,
                    endpoint=config.name, home=env.get("HOME")))
            except SandboxError as exc:
                self._deploy_failed(endpoint, revision, str(exc), [], serving)
                raise DeployError(str(exc)) from None
            pool = WorkerPool(
                config, argv, revision=revision, env=env,
                log_ring=endpoint.log,
                service_handler=functools.partial(self._service_call, config.name),
                policy=self._policy, max_frame=self._max_frame,
                on_state=functools.partial(self._pool_state_changed, endpoint))
            pool.timings = self.timings
            endpoint.log.append("gateway", f"starting revision {revision} "
                                           f"({config.workers} workers)")
            try:
                await pool.start()
                self.router.set(route)
            except (WorkerStartError, RouteConflictError) as exc:
                await pool.stop(0.5)
                reason = getattr(exc, "reason", str(exc))
                tail = getattr(exc, "stderr_tail", [])
                self._deploy_failed(endpoint, revision, reason, tail, serving)
                raise DeployError(f"revision {revision} failed to start: {reason}",
                                  tail) from None
            # The switch: synchronous, so every request sees either the old or the new.
            endpoint.pool, endpoint.config = pool, config
            endpoint.argv, endpoint.revision = list(binary_argv), revision
            endpoint.deploy_error = None
            self._set_state(endpoint, "running" if pool.state == RUNNING else pool.state,
                            pool.reason, revision)
            endpoint.log.append("gateway", f"revision {revision} is serving")
            if old is not None:
                # A request the old revision holds may run for the endpoint's whole timeout
                # (then its worker is killed anyway): drain that long, so a hot reload drops
                # none. The deploy itself waits at most drain_timeout; the rest drains behind.
                drain = asyncio.ensure_future(old.drain(reload_drain_timeout(old.config)))
                self._drains.add(drain)
                drain.add_done_callback(self._drains.discard)
                if wait_drain:
                    try:
                        await asyncio.wait_for(asyncio.shield(drain), old.config.drain_timeout)
                    except asyncio.TimeoutError:
                        endpoint.log.append("gateway", f"revision {old.revision} still drains "
                                                       "its in-flight requests")
        return self.state(config.name)

    def _deploy_failed(self, endpoint: _Endpoint, revision: str, reason: str,
                       tail: list[str], serving: bool) -> None:
        endpoint.stderr_tail = tail
        endpoint.deploy_error = {"revision": revision, "reason": reason, "stderr_tail": tail,
                                 "time": time.time()}
        endpoint.log.append("gateway", f"revision {revision} failed to start: {reason}")
        log.warning("%s: revision %s failed to start: %s", endpoint.name, revision, reason)
        if serving:
            self._emit({"type": "deploy_failed", "endpoint": endpoint.name,
                        "state": endpoint.state, "reason": reason, "revision": revision,
                        "stderr_tail": tail, "time": time.time()})
        else:
            self._set_state(endpoint, "deploy_failed", reason, revision)

    def register_stopped(self, config: EndpointConfig, binary_argv: list[str],
                         revision: str) -> dict:
        """Know an endpoint the user stopped (after a gateway restart, say): its route
        answers 503 + Retry-After, and ``start`` brings it up from ``binary_argv``. No
        worker starts now. Raises DeployError for an invalid or taken route."""
        try:
            route = Route(config.name, config.method, config.path, config.domain)
            self.router.check(route)
        except ValueError as exc:
            raise DeployError(str(exc)) from None
        if config.name in self._endpoints:
            return self.state(config.name)
        endpoint = _Endpoint(config, LogRing(self._log_lines, self._max_log_line))
        endpoint.argv, endpoint.revision = list(binary_argv), revision
        self._endpoints[config.name] = endpoint
        self.router.set(route)
        self._set_state(endpoint, "stopped", "stopped by the user", revision)
        return self.state(config.name)

    async def start(self, name: str) -> dict:
        """Start a stopped (or failed) endpoint again from its last deployed binary."""
        endpoint = self._get(name)
        if endpoint.argv is None:
            raise DeployError(f"endpoint {name!r} has never been deployed")
        if endpoint.state in ("running", "crash_looping") and endpoint.pool is not None:
            return self.state(name)
        return await self.deploy(endpoint.config, endpoint.argv, endpoint.revision)

    async def stop(self, name: str) -> dict:
        """Refuse new requests (503), let in-flight ones finish, stop the workers."""
        endpoint = self._get(name)
        async with endpoint.lock:
            self._set_state(endpoint, "stopped", None, endpoint.revision)
            if endpoint.pool is not None:
                await endpoint.pool.drain(endpoint.config.drain_timeout)
        return self.state(name)

    async def remove(self, name: str) -> None:
        """Stop the endpoint and forget it; its route answers 404 from now on."""
        endpoint = self._get(name)
        async with endpoint.lock:
            self.router.remove(name)
            self._endpoints.pop(name, None)
            if endpoint.pool is not None:
                await endpoint.pool.drain(endpoint.config.drain_timeout)
        self._emit({"type": "removed", "endpoint": name, "state": None, "reason": None,
                    "revision": endpoint.revision, "time": time.time()})

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Drain every endpoint (bounded by each one's drain timeout) and stop all workers."""
        async def one(endpoint: _Endpoint):
            async with endpoint.lock:
                if endpoint.state != "stopped":
                    self._set_state(endpoint, "stopped", "gateway shutting down",
                                    endpoint.revision)
                if endpoint.pool is not None:
                    timeout = endpoint.config.drain_timeout if drain_timeout is None \
                        else drain_timeout
                    await endpoint.pool.drain(timeout)
        await asyncio.gather(*(one(e) for e in list(self._endpoints.values())))
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)

    # -- what the admin API reads ----------------------------------------------------

    def endpoints(self) -> list[dict]:
        return [self.state(name) for name in self._endpoints]

    def names(self) -> list[str]:
        return list(self._endpoints)

    def state(self, name: str) -> dict:
        endpoint = self._get(name)
        pool = endpoint.pool
        config = endpoint.config
        stderr_tail = endpoint.stderr_tail or (pool.last_stderr if pool else [])
        return {
            "name": name,
            "state": endpoint.state,
            "reason": endpoint.reason,
            "revision": endpoint.revision,
            "route": {"method": config.method.upper(), "path": config.path,
                      "domain": config.domain},
            "workers": pool.workers() if pool is not None else [],
            "workers_wanted": config.workers,
            "spawned": pool.spawned if pool is not None else 0,
            "deploy_error": endpoint.deploy_error,
            "stderr_tail": list(stderr_tail),
        }

    def metrics(self, name: str, *, latencies: bool = False) -> dict:
        """Counters and latency percentiles; with ``latencies`` also the raw window
        (``latencies_s``), so several processes' shares can be merged."""
        endpoint = self._get(name)
        snapshot = endpoint.metrics.snapshot()
        if latencies:
            snapshot["latencies_s"] = endpoint.metrics.latencies()
        pool = endpoint.pool
        snapshot.update(name=name, state=endpoint.state, revision=endpoint.revision,
                        inflight=pool.inflight if pool else 0,
                        queue_depth=pool.queue_depth if pool else 0)
        return snapshot

    def logs(self, name: str, tail: int | None = 100, since: int | None = None) -> list[dict]:
        """The endpoint's recent log lines (worker stderr and gateway notes), oldest first."""
        ring = self._get(name).log
        lines = ring.since(since) if since is not None else ring.tail(tail)
        return [line.as_dict() for line in lines]

    # -- internals -------------------------------------------------------------------

    def _get(self, name: str) -> _Endpoint:
        try:
            return self._endpoints[name]
        except KeyError:
            raise KeyError(f"no endpoint named {name!r}") from None

    def _worker_env(self, config: EndpointConfig, revision: str) -> dict[str, str]:
        env = dict(self._base_env)
        env.update(config.env)
        env.update(EDGEBOOK_MAX_FRAME=str(self._max_frame), EDGEBOOK_ENDPOINT=config.name,
                   EDGEBOOK_REVISION=str(revision))
        return env

    def _pool_state_changed(self, endpoint: _Endpoint, pool: WorkerPool) -> None:
        if pool is not endpoint.pool or endpoint.state not in ("running", "crash_looping"):
            return  # a starting or draining revision; the endpoint's state is not its
        if pool.state == RUNNING:
            self._set_state(endpoint, "running", None, pool.revision)
        elif pool.state == CRASH_LOOPING:
            endpoint.stderr_tail = list(pool.last_stderr)
            self._set_state(endpoint, "crash_looping", pool.reason, pool.revision)

    def _set_state(self, endpoint: _Endpoint, state: str, reason: str | None,
                   revision: str | None) -> None:
        if state == endpoint.state and reason == endpoint.reason:
            return
        endpoint.state, endpoint.reason = state, reason
        if state in ("running", "starting"):
            endpoint.stderr_tail = []
        log.info("%s: %s%s", endpoint.name, state, f" ({reason})" if reason else "")
        self._emit({"type": "state", "endpoint": endpoint.name, "state": state,
                    "reason": reason, "revision": revision, "time": time.time()})

    def _emit(self, event: dict) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("on_event callback failed for %s", event)
