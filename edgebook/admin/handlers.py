"""The admin API's request handlers (the route table that maps paths to them is in
routes.py).

Every route, including unknown paths, requires ``Authorization: Bearer <token>``; the
event stream (``GET /api/events``) also accepts ``?token=`` because browsers' EventSource
cannot set headers. Tokens compare in constant time. Bodies are JSON both ways and every
error has the one shape ``{"error", "error_type", "request_id"}`` (plus, for failed
deploys, ``endpoint`` and ``build`` with diagnostics).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler

from .._version import __version__
from ..errors import GatewayError, error_body
from ..gateway.core import Gateway
from ..gateway.spec import EndpointSpec
from ..gateway.registry import NotFoundError, RegistryError
from ..sandbox import isolation_report
from . import prometheus

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024


def _wait_flag(handler: RequestHandler, default: bool = True) -> bool:
    value = handler.get_query_argument("wait", None)
    if value is None:
        return default
    return value.lower() not in ("0", "false", "no", "")


class AdminHandler(RequestHandler):
    """Base: bearer-token auth, JSON bodies, the one error shape."""

    allow_query_token = False

    def initialize(self, gateway: Gateway, token: str,
                   allowed_hosts: frozenset[str] | None = None,
                   api_document: dict[str, Any] | None = None) -> None:
        self.gateway = gateway
        self.token = token
        self.allowed_hosts = allowed_hosts
        self.api_document = api_document
        self.request_id = self.request.headers.get("X-Request-Id") or uuid.uuid4().hex

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        if self.allowed_hosts is not None \
                and self.request.host_name.strip("[]").lower() not in self.allowed_hosts:
            # A page on another site that points a name at 127.0.0.1 (DNS rebinding)
            # reaches a loopback listener with its own name in Host; refuse it.
            raise GatewayError(403, "host_not_allowed",
                               f"this admin API answers only {', '.join(sorted(self.allowed_hosts))}")
        if not self._authorized():
            raise GatewayError(401, "unauthorized",
                               "missing or wrong admin token (send 'Authorization: Bearer "
                               "<token>'; the token is in the gateway's runtime file)",
                               headers={"WWW-Authenticate": 'Bearer realm="edgebook"'})
        self.gateway.touch()  # an admin call is activity (serve --idle-exit)

    def _authorized(self) -> bool:
        supplied = None
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            supplied = value.strip()
        elif self.allow_query_token:
            supplied = self.get_query_argument("token", None)
        if not supplied:
            return False
        return hmac.compare_digest(supplied.encode(), self.token.encode())

    # -- bodies --------------------------------------------------------------------------

    def json_body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError as exc:
            raise GatewayError(400, "invalid_json", f"request body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            raise GatewayError(400, "invalid_json", "request body must be a JSON object")
        return body

    def send(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload))

    def send_deploy(self, result: dict[str, Any], created: bool = False) -> None:
        """A deploy's outcome: 200/201 running, 202 accepted, 422 build failed,
        502 deploy failed (the error shape plus ``endpoint`` and ``build``)."""
        endpoint = result["endpoint"]
        build = result.get("build")
        state = endpoint.get("state")
        if build is None and state in ("building", "starting", "created"):
            self.send(result, 202)
        elif state in ("build_failed", "running_build_failed"):
            self._send_error_payload(422, "build_failed", endpoint.get("reason") or
                                     "build failed", endpoint=endpoint, build=build)
        elif state in ("deploy_failed", "running_deploy_failed"):
            self._send_error_payload(502, "deploy_failed", endpoint.get("reason") or
                                     "the new revision failed to start",
                                     endpoint=endpoint, build=build)
        else:
            self.send(result, 201 if created else 200)

    def _send_error_payload(self, status: int, error_type: str, message: str,
                            **extra: Any) -> None:
        payload = json.loads(error_body(message, error_type, self.request_id))
        payload.update(extra)
        self.send(payload, status)

    # -- errors --------------------------------------------------------------------------

    def on_finish(self) -> None:
        self.gateway.touch()  # a long call (a build, an event stream) ends as activity

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, error_type, message, headers = _classify(exc, status_code, self._reason)
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(message, error_type, self.request_id))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, (GatewayError, RegistryError, HTTPError)):
            detail = getattr(value, "log_message", None) or str(value)
            level = logging.WARNING if not isinstance(value, RegistryError) or \
                value.kind in ("not_found", "conflict", "invalid") else logging.ERROR
            log.log(level, "%s %s -> %s", self.request.method, self.request.path, detail)
        else:
            log.error("%s %s failed", self.request.method, self.request.path,
                      exc_info=(typ, value, tb))


def _classify(exc: BaseException | None, status_code: int,
              reason: str) -> tuple[int, str, str, dict[str, str]]:
    if isinstance(exc, GatewayError):
        return exc.status, exc.error_type, exc.message, exc.headers
    if isinstance(exc, NotFoundError):
        return 404, "not_found", exc.reason, {}
    if isinstance(exc, RegistryError):
        status = {"conflict": 409, "invalid": 400}.get(exc.kind, 503)
        error_type = {"conflict": "conflict", "invalid": "invalid"}.get(exc.kind,
                                                                        "registry_unavailable")
        return status, error_type, exc.reason, {}
    if isinstance(exc, HTTPError):
        return exc.status_code, "http_error", exc.log_message or reason, {}
    if status_code >= 500:
        return status_code, "internal", "internal error in the admin API (see the gateway log)", {}
    return status_code, "http_error", reason, {}


# -- handlers ---------------------------------------------------------------------------------

class HealthHandler(AdminHandler):
    async def get(self) -> None:
        isolation = await asyncio.to_thread(isolation_report, self.gateway.sandbox,
                                            getattr(self.gateway.builder, "sandbox", None))
        self.send({"ok": True, "version": __version__, "role": self.gateway.role,
                   "url": self.gateway.url, "isolation": isolation})


class ProbeHandler(RequestHandler):
    """``/healthz`` (the process answers) and ``/readyz`` (it serves what the registry says:
    200, else 503 with the reason), for load balancers and Kubernetes probes. No token:
    they say nothing but yes or no and why."""

    def initialize(self, gateway: Gateway, probe: str) -> None:
        self.gateway = gateway
        self.probe = probe

    def get(self) -> None:
        if self.probe == "healthz":
            ok, reason = True, "alive"
        else:
            ok, reason = self.gateway.ready()
        self.set_status(200 if ok else 503)
        self.set_header("Cache-Control", "no-store")
        self.finish({"ok": ok, "reason": reason})

    head = get


class ClusterHandler(AdminHandler):
    async def get(self) -> None:
        self.send(await self.gateway.cluster_view())


class PrometheusHandler(AdminHandler):
    """``/metrics``: every endpoint's counters, latency histogram and gauges in Prometheus'
    text format, for a scraper that presents the admin token."""

    async def get(self) -> None:
        body = await prometheus.exposition(self.gateway)
        self.set_header("Content-Type", prometheus.CONTENT_TYPE)
        self.finish(body)


class StatsHandler(AdminHandler):
    def get(self) -> None:
        self.send(self.gateway.stats())


class EndpointsHandler(AdminHandler):
    def get(self) -> None:
        self.send({"endpoints": [self.gateway.view(r) for r in
                                 self.gateway.registry.endpoints()]})

    async def post(self) -> None:
        body = self.json_body()
        name = body.get("name")
        if not isinstance(name, str):
            raise GatewayError(400, "missing_field", "missing field: name")
        if self.gateway.registry.find_endpoint(name) is not None:
            raise GatewayError(409, "exists", f"endpoint {name!r} already exists; "
                                              "use PUT /api/endpoints/{name} to update it")
        spec = EndpointSpec.from_body(name, body)
        result = await self.gateway.put_endpoint(spec, wait=_wait_flag(self))
        self.send_deploy(result, created=True)


def _expected_version(handler: AdminHandler) -> int | None:
    """``If-Match: "<version>"`` (the ``ETag`` a GET gave): the write happens only if the
    endpoint is still at that version, else 409; ``If-Match: "0"`` creates only."""
    value = handler.request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise GatewayError(400, "invalid_header",
                           f"If-Match must be an endpoint's ETag such as \"12\", not {value!r}")
    return int(text)


class EndpointHandler(AdminHandler):
    def get(self, name: str) -> None:
        record = self.gateway.registry.get_endpoint(name)
        self.set_header("ETag", f'"{record.version}"')
        self.send(self.gateway.view(record))

    async def put(self, name: str) -> None:
        body = self.json_body()
        if "name" in body and body["name"] != name:
            raise GatewayError(400, "invalid_field", "name in the body differs from the URL")
        created = self.gateway.registry.find_endpoint(name) is None
        spec = EndpointSpec.from_body(name, body)
        result = await self.gateway.put_endpoint(spec, wait=_wait_flag(self),
                                                 expected_version=_expected_version(self))
        self.send_deploy(result, created=created)

    async def patch(self, name: str) -> None:
        body = self.json_body()
        body.pop("name", None)
        result = await self.gateway.patch_endpoint(name, body, wait=_wait_flag(self),
                                                   expected_version=_expected_version(self))
        self.send_deploy(result)

    async def delete(self, name: str) -> None:
        await self.gateway.remove_endpoint(name)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class SourceHandler(AdminHandler):
    def get(self, name: str) -> None:
        record = self.gateway.registry.get_endpoint(name)
        source, deps, revision = self.gateway.live_source(record)
        body = {"name": name, "source": source, "deps": deps, "revision": revision}
        if revision is not None and (record.source, list(record.deps)) != (source, deps):
            # A later edit that did not go live (its build failed): shown, never served.
            body["submitted"] = {"source": record.source, "deps": record.deps}
        self.send(body)

    async def put(self, name: str) -> None:
        body = self.json_body()
        if not isinstance(body.get("source"), str):
            raise GatewayError(400, "missing_field", "missing field: source (a string)")
        result = await self.gateway.put_source(name, body["source"], wait=_wait_flag(self))
        self.send_deploy(result)


class BuildHandler(AdminHandler):
    async def post(self, name: str) -> None:
        result = await self.gateway.build(name, wait=_wait_flag(self))
        self.send_deploy(result)


class BuildCancelHandler(AdminHandler):
    async def post(self, name: str) -> None:
        self.send({"name": name, "cancelled": await self.gateway.cancel_build(name)})


class StartHandler(AdminHandler):
    async def post(self, name: str) -> None:
        self.send(await self.gateway.start_endpoint(name))


class StopHandler(AdminHandler):
    async def post(self, name: str) -> None:
        self.send(await self.gateway.stop_endpoint(name))


class RestartHandler(AdminHandler):
    async def post(self, name: str) -> None:
        self.send(await self.gateway.restart_endpoint(name))


class LogsHandler(AdminHandler):
    async def get(self, name: str) -> None:
        tail = _int_arg(self, "tail", 200, minimum=0)
        since = _int_arg(self, "since", None, minimum=0)
        lines = await self.gateway.all_logs(name, tail if since is None else None, since)
        if since is not None and tail:
            lines = lines[-tail:]
        self.send({"name": name, "lines": lines})


class MetricsHandler(AdminHandler):
    async def get(self, name: str) -> None:
        self.send({"name": name, "metrics": await self.gateway.all_metrics(name)})


class RequestsHandler(AdminHandler):
    def get(self, name: str) -> None:
        self.send({"name": name, "requests": self.gateway.recent_requests(name)})


class RevisionsHandler(AdminHandler):
    def get(self, name: str) -> None:
        record = self.gateway.registry.get_endpoint(name)
        revisions = []
        for revision in self.gateway.registry.revisions(name):
            data = revision.to_dict()
            data.pop("binary", None)
            data["live"] = revision.number == record.live_revision
            revisions.append(data)
        self.send({"name": name, "revisions": revisions})


class ServicesHandler(AdminHandler):
    def get(self) -> None:
        self.send({"services": self.gateway.services.describe()})

    async def post(self) -> None:
        body = self.json_body()
        name = body.get("name")
        if not isinstance(name, str):
            raise GatewayError(400, "missing_field", "missing field: name")
        try:
            self.gateway.registry.get_service(name)
        except NotFoundError:
            pass
        else:
            raise GatewayError(409, "exists", f"service {name!r} already exists")
        self.send((await _put_service(self.gateway, name, body)).to_public_dict(), 201)


async def _put_service(gateway: Gateway, name: str, body: dict[str, Any]):
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise GatewayError(400, "missing_field", "missing field: kind (e.g. 'sqlite')")
    gateway.require_primary()
    return await gateway.services.put(name, kind, body.get("config") or {})


class ServiceHandler(AdminHandler):
    def get(self, name: str) -> None:
        record = self.gateway.registry.get_service(name)
        data = record.to_public_dict()
        data["endpoints"] = self.gateway.registry.bound_endpoints(name)
        self.send(data)

    async def put(self, name: str) -> None:
        self.send((await _put_service(self.gateway, name, self.json_body())).to_public_dict())

    async def delete(self, name: str) -> None:
        self.gateway.require_primary()
        await self.gateway.services.delete(name)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class ServiceTestHandler(AdminHandler):
    async def post(self, name: str) -> None:
        self.send(await self.gateway.services.test(name))


class DomainsHandler(AdminHandler):
    def get(self) -> None:
        domains: dict[str, list[str]] = {}
        for record in self.gateway.registry.endpoints():
            if record.domain:
                domains.setdefault(record.domain, []).append(record.name)
        self.send({"domains": [{"domain": d, "endpoints": names}
                               for d, names in sorted(domains.items())]})


class EventsHandler(AdminHandler):
    """Server-sent events: build progress and state changes, with heartbeat comments."""

    allow_query_token = True

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    async def get(self) -> None:
        heartbeat = self.settings.get("heartbeat", 15.0)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")
        subscription = self.gateway.events.subscribe()
        self._subscription = subscription
        since = self.request.headers.get("Last-Event-ID") or self.get_query_argument("since",
                                                                                     None)
        try:
            backlog = self.gateway.events.since(int(since)) if since else []
        except ValueError:
            backlog = []
        try:
            self.write(": edgebook events\n\n")
            self._write_event({"type": "hello", "seq": self.gateway.events.last_seq,
                               "version": __version__})
            for event in backlog:
                self._write_event(event)
            await self.flush()
            while not subscription.closed:
                try:
                    event = await subscription.get(timeout=heartbeat)
                except asyncio.TimeoutError:
                    self.write(": heartbeat\n\n")
                else:
                    if event is None:
                        break
                    self._write_event(event)
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            subscription.close()
        if not self._finished:
            self.finish()

    def _write_event(self, event: dict[str, Any]) -> None:
        data = json.dumps(event)
        if "seq" in event and event.get("type") != "hello":
            self.write(f"id: {event['seq']}\n")
        self.write(f"event: {event['type']}\ndata: {data}\n\n")

    def on_connection_close(self) -> None:
        subscription = getattr(self, "_subscription", None)
        if subscription is not None:
            subscription.close()  # wakes the waiting get(), so the handler ends now


class OpenAPIHandler(AdminHandler):
    def get(self) -> None:
        self.send(self.api_document or {})


class EndpointsOpenAPIHandler(AdminHandler):
    def get(self) -> None:
        self.send(self.gateway.openapi_document())


class NotFoundHandler(AdminHandler):
    def prepare(self) -> None:
        super().prepare()
        raise GatewayError(404, "not_found", f"no admin route {self.request.path}")


def _int_arg(handler: RequestHandler, name: str, default: int | None, *,
             minimum: int) -> int | None:
    raw = handler.get_query_argument(name, None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise GatewayError(400, "invalid_query", f"{name} must be an integer") from None
    if value < minimum:
        raise GatewayError(400, "invalid_query", f"{name} must be at least {minimum}")
    return value


