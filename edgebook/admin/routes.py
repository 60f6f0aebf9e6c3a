"""The admin API's route table and its app: ``ROUTES`` maps each path to its handler and
says what each method does; the Tornado app, the OpenAPI document of the admin API
(``openapi_document``, rendered to docs/admin-api.md by apidoc.py) and the tests that prove
every route rejects a missing or wrong token are all generated from it.

The admin API listens on its own address, never on the data plane; the same listener
serves the headless admin page (page.py).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from tornado.web import Application, RedirectHandler, StaticFileHandler

from .._version import __version__
from ..gateway.core import Gateway
from ..gateway.spec import request_schema
from .handlers import (AdminHandler, BuildCancelHandler, BuildHandler, ClusterHandler,
                       DomainsHandler,
                       EndpointHandler, EndpointsHandler, EndpointsOpenAPIHandler,
                       EventsHandler, HealthHandler, LogsHandler, MetricsHandler,
                       NotFoundHandler, OpenAPIHandler, ProbeHandler, PrometheusHandler,
                       RequestsHandler,
                       RestartHandler,
                       RevisionsHandler,
                       ServiceHandler, ServicesHandler, ServiceTestHandler, SourceHandler,
                       StartHandler, StatsHandler, StopHandler)
from .page import PROXY_PREFIX, STATIC_DIR, AdminPageProxyHandler
from .prometheus import CONTENT_TYPE as PROMETHEUS_TEXT

@dataclasses.dataclass(frozen=True)
class AdminRoute:
    """One path of the admin API: its pattern, handler and what each method does."""

    path: str  # OpenAPI style, e.g. /api/endpoints/{name}
    handler: type[AdminHandler]
    methods: dict[str, str]  # method -> summary
    query: tuple[tuple[str, str], ...] = ()  # (name, description) query parameters
    produces: str = "application/json"  # the media type of a 200

    @property
    def pattern(self) -> str:
        return re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$"

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


_WAIT = (("wait", "1 (default): answer when the deploy finished; 0: answer 202 at once "
                  "and report progress on /api/events"),)

ROUTES: list[AdminRoute] = [
    AdminRoute("/api/health", HealthHandler,
               {"GET": "Liveness, version, and the isolation in force"}),
    AdminRoute("/api/stats", StatsHandler, {"GET": "Gateway-wide counters"}),
    AdminRoute("/metrics", PrometheusHandler,
               {"GET": "Every endpoint's counters, latency histogram and gauges, and the "
                       "registry version served, in Prometheus' text format"},
               produces=PROMETHEUS_TEXT),
    AdminRoute("/api/cluster", ClusterHandler,
               {"GET": "Every gateway sharing the registry: the version and revisions each "
                       "serves, whether it is ready (404 without a shared registry)"}),
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
    AdminRoute("/api/endpoints/{name}/requests", RequestsHandler,
               {"GET": "The last answered requests, newest first, with where their time "
                       "went (phases and service calls, in ms)"}),
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
                ("since", "replay kept events with a greater seq")),
               produces="text/event-stream"),
    AdminRoute("/api/openapi.json", OpenAPIHandler, {"GET": "This API as OpenAPI 3.1"}),
    AdminRoute("/api/openapi/endpoints.json", EndpointsOpenAPIHandler,
               {"GET": "The running endpoints as OpenAPI 3.1, with real examples"}),
]


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
    kwargs = {"gateway": gateway, "token": token, "allowed_hosts": allowed_hosts,
              "api_document": openapi_document()}
    rules = [(route.pattern, route.handler, kwargs) for route in ROUTES]
    rules += [
        (r"/healthz", ProbeHandler, {"gateway": gateway, "probe": "healthz"}),
        (r"/readyz", ProbeHandler, {"gateway": gateway, "probe": "readyz"}),
        (r"/admin", RedirectHandler, {"url": "/admin/"}),
        (PROXY_PREFIX + "(.*)", AdminPageProxyHandler, kwargs),
        (r"/admin/(.*)", StaticFileHandler,
         {"path": STATIC_DIR, "default_filename": "index.html"}),
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
                            "content": {route.produces: {"schema": {}}}},
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
                "EndpointRequest": request_schema(),
            },
        },
    }


def _operation_id(method: str, path: str) -> str:
    parts = [p.strip("{}") for p in path.split("/")[2:] if p]
    return method.lower() + "_" + "_".join(re.sub(r"\W", "_", p) for p in parts)
