"""The admin API: a token-protected Tornado app on its own listener, routes under /api/.

The same listener serves the headless admin page at ``/admin/`` (static files, no secrets
in them: the page asks for the token) and ``/admin/proxy/<path>``, which forwards to the
data plane for the page's request builder when the ``X-Edgebook-Admin-Token`` header holds
the token.

Every route, including unknown paths, requires ``Authorization: Bearer <token>``; the
event stream (``GET /api/events``) also accepts ``?token=`` because browsers' EventSource
cannot set headers. Tokens compare in constant time. Bodies are JSON both ways and every
error has the one shape ``{"error", "error_type", "request_id"}`` (plus, for failed
deploys, ``endpoint`` and ``build`` with diagnostics).

``ROUTES`` is the route table: the app, the OpenAPI document and the tests that prove
every route rejects a missing or wrong token are all generated from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import re
import uuid
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.web import Application, HTTPError, RedirectHandler, RequestHandler, StaticFileHandler

from . import __version__
from .errors import GatewayError, error_body
from .gateway import LIMIT_OPTIONS, EndpointSpec, Gateway
from .registry import NotFoundError, RegistryError

log = logging.getLogger("edgebook.admin")

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
                   allowed_hosts: frozenset[str] | None = None) -> None:
        self.gateway = gateway
        self.token = token
        self.allowed_hosts = allowed_hosts
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
        elif state == "build_failed":
            self._send_error_payload(422, "build_failed", endpoint.get("reason") or
                                     "build failed", endpoint=endpoint, build=build)
        elif state == "deploy_failed":
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
    def get(self) -> None:
        self.send({"ok": True, "version": __version__, "role": self.gateway.role,
                   "url": self.gateway.url})


class StatsHandler(AdminHandler):
    def get(self) -> None:
        self.send(self.gateway.stats())


def _spec_from(name: str, body: dict[str, Any], *, require: tuple[str, ...]) -> EndpointSpec:
    missing = [key for key in require if key not in body]
    if missing:
        raise GatewayError(400, "missing_field", f"missing field(s): {', '.join(missing)}")
    known = {"name", "method", "path", "source", "deps", "workers", "timeout", "max_body",
             "profile", "domain", "services", "origin"}
    unknown = set(body) - known
    if unknown:
        raise GatewayError(400, "invalid_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    for key, kind in (("method", str), ("path", str), ("source", str)):
        if not isinstance(body.get(key), kind):
            raise GatewayError(400, "invalid_field", f"{key} must be a string")
    deps = body.get("deps") or []
    services = body.get("services") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise GatewayError(400, "invalid_field", "deps must be a list of strings like 'rand@0.8'")
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise GatewayError(400, "invalid_field", "services must be a list of service names")
    origin = body.get("origin")
    if origin is not None and not isinstance(origin, dict):
        raise GatewayError(400, "invalid_field", "origin must be an object")
    return EndpointSpec(
        name=name, method=body["method"], path=body["path"], source=body["source"],
        deps=deps, domain=body.get("domain"), services=services, origin=origin,
        options={k: body.get(k) for k in ("workers", "timeout", "max_body", "profile",
                                          *LIMIT_OPTIONS)})


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
        spec = _spec_from(name, body, require=("method", "path", "source"))
        result = await self.gateway.put_endpoint(spec, wait=_wait_flag(self))
        self.send_deploy(result, created=True)


class EndpointHandler(AdminHandler):
    def get(self, name: str) -> None:
        self.send(self.gateway.view(self.gateway.registry.get_endpoint(name)))

    async def put(self, name: str) -> None:
        body = self.json_body()
        if "name" in body and body["name"] != name:
            raise GatewayError(400, "invalid_field", "name in the body differs from the URL")
        created = self.gateway.registry.find_endpoint(name) is None
        spec = _spec_from(name, body, require=("method", "path", "source"))
        result = await self.gateway.put_endpoint(spec, wait=_wait_flag(self))
        self.send_deploy(result, created=created)

    async def patch(self, name: str) -> None:
        body = self.json_body()
        body.pop("name", None)
        result = await self.gateway.patch_endpoint(name, body, wait=_wait_flag(self))
        self.send_deploy(result)

    async def delete(self, name: str) -> None:
        await self.gateway.remove_endpoint(name)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class SourceHandler(AdminHandler):
    def get(self, name: str) -> None:
        record = self.gateway.registry.get_endpoint(name)
        self.send({"name": name, "source": record.source, "deps": record.deps})

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
    def post(self, name: str) -> None:
        self.send({"name": name, "cancelled": self.gateway.cancel_build(name)})


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
    def get(self, name: str) -> None:
        tail = _int_arg(self, "tail", 200, minimum=0)
        since = _int_arg(self, "since", None, minimum=0)
        lines = self.gateway.logs(name, tail if since is None else None, since)
        if since is not None and tail:
            lines = lines[-tail:]
        self.send({"name": name, "lines": lines})


class MetricsHandler(AdminHandler):
    def get(self, name: str) -> None:
        self.send({"name": name, "metrics": self.gateway.metrics(name)})


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
        self.send({"services": self.gateway.describe_services()})

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
    return await gateway.put_service(name, kind, body.get("config") or {})


class ServiceHandler(AdminHandler):
    def get(self, name: str) -> None:
        record = self.gateway.registry.get_service(name)
        data = record.to_public_dict()
        data["endpoints"] = self.gateway.registry.bound_endpoints(name)
        self.send(data)

    async def put(self, name: str) -> None:
        self.send((await _put_service(self.gateway, name, self.json_body())).to_public_dict())

    async def delete(self, name: str) -> None:
        await self.gateway.delete_service(name)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class ServiceTestHandler(AdminHandler):
    async def post(self, name: str) -> None:
        self.send(await self.gateway.test_service(name))


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
            subscription.close()
            # wake the waiting get() so the handler ends now
            subscription._queue.put_nowait(None)


class OpenAPIHandler(AdminHandler):
    def get(self) -> None:
        self.send(openapi_document())


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


# -- the route table --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AdminRoute:
    """One path of the admin API: its pattern, handler and what each method does."""

    path: str  # OpenAPI style, e.g. /api/endpoints/{name}
    handler: type[AdminHandler]
    methods: dict[str, str]  # method -> summary
    query: tuple[tuple[str, str], ...] = ()  # (name, description) query parameters

    @property
    def pattern(self) -> str:
        return re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$"

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


_WAIT = (("wait", "1 (default): answer when the deploy finished; 0: answer 202 at once "
                  "and report progress on /api/events"),)

ROUTES: list[AdminRoute] = [
    AdminRoute("/api/health", HealthHandler, {"GET": "Liveness and version"}),
    AdminRoute("/api/stats", StatsHandler, {"GET": "Gateway-wide counters"}),
    AdminRoute("/api/endpoints", EndpointsHandler,
               {"GET": "List endpoints",
                "POST": "Create an endpoint (body includes name), build and deploy it"},
               _WAIT),
    AdminRoute("/api/endpoints/{name}", EndpointHandler,
               {"GET": "One endpoint with its state",
                "PUT": "Create or update an endpoint, build and deploy it",
                "PATCH": "Change some fields (redeploys unless only origin changed)",
                "DELETE": "Stop and remove an endpoint"}, _WAIT),
    AdminRoute("/api/endpoints/{name}/source", SourceHandler,
               {"GET": "The endpoint's Rust source", "PUT": "Replace the source and redeploy"},
               _WAIT),
    AdminRoute("/api/endpoints/{name}/build/cancel", BuildCancelHandler,
               {"POST": "Cancel the endpoint's queued or running build"}),
    AdminRoute("/api/endpoints/{name}/build", BuildHandler,
               {"POST": "Rebuild the current source and deploy it"}, _WAIT),
    AdminRoute("/api/endpoints/{name}/start", StartHandler,
               {"POST": "Start a stopped endpoint (from its cached binary)"}),
    AdminRoute("/api/endpoints/{name}/stop", StopHandler,
               {"POST": "Stop an endpoint's workers (requests get 503)"}),
    AdminRoute("/api/endpoints/{name}/restart", RestartHandler,
               {"POST": "Replace the workers with fresh ones (no request lost)"}),
    AdminRoute("/api/endpoints/{name}/logs", LogsHandler,
               {"GET": "The last lines of the workers' stderr"},
               (("tail", "how many lines (default 200)"),
                ("since", "only lines with a greater seq"))),
    AdminRoute("/api/endpoints/{name}/metrics", MetricsHandler,
               {"GET": "Requests, errors by class, latency percentiles"}),
    AdminRoute("/api/endpoints/{name}/revisions", RevisionsHandler,
               {"GET": "Every build of the endpoint, newest first"}),
    AdminRoute("/api/services", ServicesHandler,
               {"GET": "List services (secrets masked)", "POST": "Create a service"}),
    AdminRoute("/api/services/{name}", ServiceHandler,
               {"GET": "One service (secrets masked)", "PUT": "Create or replace a service",
                "DELETE": "Remove an unbound service"}),
    AdminRoute("/api/services/{name}/test", ServiceTestHandler,
               {"POST": "Try to connect to the service"}),
    AdminRoute("/api/domains", DomainsHandler, {"GET": "Domains that endpoints answer"}),
    AdminRoute("/api/events", EventsHandler,
               {"GET": "Server-sent events: build progress and state changes"},
               (("token", "the admin token, for clients that cannot set headers"),
                ("since", "replay kept events with a greater seq"))),
    AdminRoute("/api/openapi.json", OpenAPIHandler, {"GET": "This API as OpenAPI 3.1"}),
    AdminRoute("/api/openapi/endpoints.json", EndpointsOpenAPIHandler,
               {"GET": "The running endpoints as OpenAPI 3.1, with real examples"}),
]


ADMIN_PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "admin_page")
#: Headers that belong to one hop and are not forwarded by the admin page's proxy.
_PROXY_DROP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "te",
                         "upgrade", "proxy-connection", "content-length",
                         "x-edgebook-admin-token", "authorization", "cookie"})


class AdminPageProxyHandler(AdminHandler):
    """``/admin/proxy/<path>``: the admin page's request builder reaching the data plane."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def _authorized(self) -> bool:
        supplied = self.request.headers.get("X-Edgebook-Admin-Token", "")
        return bool(supplied) and hmac.compare_digest(supplied.encode(), self.token.encode())

    async def _forward(self, path: str) -> None:
        request = self.request
        url = self.gateway.url + "/" + path + (f"?{request.query}" if request.query else "")
        headers = {k: v for k, v in request.headers.get_all() if k.lower() not in _PROXY_DROP}
        try:
            response = await AsyncHTTPClient().fetch(HTTPRequest(
                url, method=request.method, headers=headers,
                body=request.body if request.method in ("POST", "PUT", "PATCH") else None,
                allow_nonstandard_methods=True, follow_redirects=False,
                decompress_response=False, request_timeout=300), raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise GatewayError(502, "proxy_error", "the data plane did not answer",
                               log_message=f"admin page proxy to {url}: {exc}") from None
        self.set_status(response.code, response.reason)
        self.clear_header("Content-Type")
        for name, value in response.headers.get_all():
            if name.lower() not in _PROXY_DROP and name.lower() != "content-encoding":
                self.add_header(name, value)
        self.finish(response.body or b"")

    get = head = post = delete = patch = put = options = _forward


#: The Host names a loopback admin listener answers to.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def make_admin_app(gateway: Gateway, token: str, *, heartbeat: float = 15.0,
                   allowed_hosts: frozenset[str] | None = LOOPBACK_HOSTS) -> Application:
    """The admin API for ``gateway``, accepting ``token``, and the headless admin page.

    ``allowed_hosts``: the Host names it answers (None: any, for a listener on a public
    address behind its own name).
    """
    if not token:
        raise ValueError("the admin API needs a non-empty token")
    kwargs = {"gateway": gateway, "token": token, "allowed_hosts": allowed_hosts}
    rules = [(route.pattern, route.handler, kwargs) for route in ROUTES]
    rules += [
        (r"/admin", RedirectHandler, {"url": "/admin/"}),
        (r"/admin/proxy/(.*)", AdminPageProxyHandler, kwargs),
        (r"/admin/(.*)", StaticFileHandler,
         {"path": ADMIN_PAGE_DIR, "default_filename": "index.html"}),
    ]
    return Application(rules, default_handler_class=NotFoundHandler,
                       default_handler_args=kwargs, heartbeat=heartbeat,
                       compress_response=False, serve_traceback=False)


def openapi_document() -> dict[str, Any]:
    """An OpenAPI 3.1 description of ``ROUTES``."""
    error = {"$ref": "#/components/schemas/Error"}
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item: dict[str, Any] = {}
        for method, summary in route.methods.items():
            parameters = [{"name": p, "in": "path", "required": True,
                           "schema": {"type": "string"}} for p in route.params]
            parameters += [{"name": q, "in": "query", "required": False,
                            "description": d, "schema": {"type": "string"}}
                           for q, d in route.query]
            op: dict[str, Any] = {
                "summary": summary,
                "operationId": _operation_id(method, route.path),
                "responses": {
                    "200": {"description": "OK",
                            "content": {"text/event-stream" if route.handler is EventsHandler
                                        else "application/json": {"schema": {}}}},
                    "401": {"description": "Missing or wrong token",
                            "content": {"application/json": {"schema": error}}},
                    "default": {"description": "Error",
                                "content": {"application/json": {"schema": error}}},
                },
            }
            if parameters:
                op["parameters"] = parameters
            if method in ("PUT", "POST", "PATCH") and route.handler not in (
                    BuildHandler, StartHandler, StopHandler, RestartHandler,
                    ServiceTestHandler):
                op["requestBody"] = {"content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/EndpointRequest"}
                    if route.path.startswith("/api/endpoints") and "source" not in route.path
                    else {"type": "object"}}}}
            if route.handler in (EndpointsHandler, EndpointHandler, SourceHandler,
                                 BuildHandler) and method != "GET" and method != "DELETE":
                op["responses"]["202"] = {"description": "Accepted (wait=0)"}
                op["responses"]["422"] = {"description": "Build failed (diagnostics attached)"}
                op["responses"]["502"] = {"description": "New revision failed to start"}
            if method == "DELETE":
                op["responses"]["204"] = {"description": "Removed"}
            item[method.lower()] = op
        paths[route.path] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "edgebook admin API", "version": __version__},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "error_type"],
                          "properties": {"error": {"type": "string"},
                                         "error_type": {"type": "string"},
                                         "request_id": {"type": "string"}}},
                "EndpointRequest": {
                    "type": "object", "required": ["method", "path", "source"],
                    "properties": {
                        "method": {"type": "string"}, "path": {"type": "string"},
                        "source": {"type": "string"},
                        "deps": {"type": "array", "items": {"type": "string"}},
                        "workers": {"type": "integer"}, "timeout": {"type": "number"},
                        "max_body": {"type": "integer"},
                        "profile": {"enum": ["dev", "release"]},
                        "domain": {"type": ["string", "null"]},
                        "services": {"type": "array", "items": {"type": "string"}},
                        "origin": {"type": ["object", "null"]}}},
            },
        },
    }


def _operation_id(method: str, path: str) -> str:
    parts = [p.strip("{}") for p in path.split("/")[2:] if p]
    return method.lower() + "_" + "_".join(re.sub(r"\W", "_", p) for p in parts)
