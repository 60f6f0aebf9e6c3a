"""A small synchronous client for the gateway's admin API.

Uses only ``urllib``, so it is safe to call from a Jupyter kernel whose thread already runs
an asyncio loop (no loop is touched). ``AdminClient.from_data_dir`` finds the gateway through
the runtime file; ``ensure_gateway`` starts one in the background when none is running.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from . import endpoint_options, paths
from .discovery import (DetachedGateway, RuntimeInfo, StartError, find_live, find_or_start,
                        open_admin_url, ownerless_idle, wait_while_starting)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 600.0  # a cold release build can take minutes


class AdminError(Exception):
    """The admin API answered with an error (or could not be reached: status 0).

    ``details`` is the whole JSON error body; for build failures it carries ``build`` with
    ``diagnostics`` and ``rendered`` (diagnostics shown at the source's lines).
    """

    def __init__(self, status: int, error_type: str, message: str,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.details = details or {}

    @property
    def build(self) -> dict[str, Any] | None:
        return self.details.get("build")

    @property
    def diagnostics(self) -> list[Any]:
        return (self.build or {}).get("diagnostics") or []

    @property
    def rendered(self) -> str:
        return (self.build or {}).get("rendered") or ""

    def __str__(self) -> str:
        return f"{self.message} ({self.error_type}, HTTP {self.status})"


class GatewayNotRunningError(AdminError):
    """No live gateway for the data dir."""

    def __init__(self, message: str):
        super().__init__(0, "not_running", message)


def default_data_dir() -> str:
    return paths.default_data_dir()


#: A gateway elsewhere (on Kubernetes, behind a port-forward): its admin API, the token, and
#: the data plane's URL as this machine reaches it. With the first set, the CLI and the
#: notebook manage that gateway instead of finding or starting one in the data dir.
REMOTE_ADMIN_ENV = "EDGEBOOK_ADMIN_URL"
REMOTE_TOKEN_ENV = "EDGEBOOK_ADMIN_TOKEN"
REMOTE_DATA_ENV = "EDGEBOOK_URL"


def remote_configured() -> bool:
    return bool(os.environ.get(REMOTE_ADMIN_ENV))


class AdminClient:
    """Calls the admin API at ``admin_url`` with the bearer ``token``."""

    def __init__(self, admin_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
                 info: RuntimeInfo | None = None, data_url: str | None = None):
        self.admin_url = admin_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.info = info
        self._data_url = data_url.rstrip("/") if data_url else None

    @classmethod
    def remote(cls, admin_url: str | None = None, token: str | None = None,
               data_url: str | None = None, **kwargs: Any) -> AdminClient:
        """A client for a gateway elsewhere: arguments, else ``EDGEBOOK_ADMIN_URL``,
        ``EDGEBOOK_ADMIN_TOKEN`` and ``EDGEBOOK_URL`` (the data plane; default: what the
        gateway says its URL is)."""
        admin_url = admin_url or os.environ.get(REMOTE_ADMIN_ENV)
        token = token or os.environ.get(REMOTE_TOKEN_ENV)
        if not admin_url:
            raise AdminError(0, "not_configured", f"no admin URL: set {REMOTE_ADMIN_ENV}")
        if not token:
            raise AdminError(0, "not_configured",
                             f"{admin_url} needs the admin token: set {REMOTE_TOKEN_ENV}")
        return cls(admin_url, token,
                   data_url=data_url or os.environ.get(REMOTE_DATA_ENV) or None, **kwargs)

    @classmethod
    def from_data_dir(cls, data_dir: str | None = None, **kwargs: Any) -> AdminClient:
        """A client for the live gateway of ``data_dir``; ``GatewayNotRunningError`` if none.
        With ``EDGEBOOK_ADMIN_URL`` set, the remote gateway it names instead."""
        if remote_configured():
            return cls.remote(**kwargs)
        data_dir = data_dir or default_data_dir()
        info = find_live(data_dir) or wait_while_starting(data_dir)
        if info is None:
            raise GatewayNotRunningError(
                f"no edgebook gateway is running for {data_dir}; start one with "
                f"`edgebook serve --data-dir {data_dir}`")
        return cls(info.admin_url, info.token, info=info, **kwargs)

    @property
    def url(self) -> str | None:
        """The data plane's base URL, when known (given, or from the runtime file)."""
        if self._data_url:
            return self._data_url
        return self.info.url if self.info else None

    # -- transport -------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *,
                query: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        url = self.admin_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with open_admin_url(req, timeout or self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(0, "unreachable",
                             f"cannot reach the edgebook admin API at {self.admin_url}: "
                             f"{reason}") from exc
        return json.loads(raw) if raw else None

    # -- endpoints -------------------------------------------------------------------------

    def health(self) -> dict:
        return self.request("GET", "/api/health")

    def stats(self) -> dict:
        return self.request("GET", "/api/stats")

    def endpoints(self) -> list[dict]:
        return self.request("GET", "/api/endpoints")["endpoints"]

    def endpoint(self, name: str) -> dict:
        return self.request("GET", f"/api/endpoints/{_q(name)}")

    def placement(self, name: str | None, method: str, path: str,
                  domain: str | None = None) -> tuple[str | None, str | None]:
        """Before deploying ``method path`` as ``name``: (the name of the endpoint that
        already answers exactly this route, or None; a note when ``name`` exists on another
        route and the deploy moves it, or None). The CLI and the notebook default an
        endpoint's name differently (file name, ``get_users_id``); the first lets either
        update what the other deployed instead of colliding with it."""
        owner = moved = None
        for ep in self.endpoints():
            if (ep.get("method"), ep.get("path"), ep.get("domain") or None) == \
                    (method.upper(), path, domain or None):
                owner = ep.get("name")
            if name and ep.get("name") == name and \
                    (ep.get("method"), ep.get("path")) != (method.upper(), path):
                moved = (f"endpoint {name} moves from {ep.get('method')} {ep.get('path')} "
                         f"to {method.upper()} {path}")
        return owner, moved

    def deploy(self, name: str, method: str, path: str, source: str, *,
               deps: Sequence[str] = (), domain: str | None = None,
               services: Sequence[str] | None = None, origin: dict | None = None,
               wait: bool = True, **options: Any) -> dict:
        """Create or update an endpoint, build it and deploy it.

        ``options`` are the endpoint's options (``workers``, ``timeout``, ``max_body``,
        ``profile``, ``limit_processes``, ...; see ``edgebook.endpoint_options``); ``None``
        leaves one at the gateway's default. With ``wait`` (default) returns
        ``{"endpoint": ..., "build": ...}`` once the endpoint is running; raises
        ``AdminError`` (``build_failed`` with diagnostics, or ``deploy_failed``) otherwise.
        Without ``wait`` returns as soon as the build started.
        """
        unknown = set(options) - set(endpoint_options.NAMES)
        if unknown:
            raise TypeError(f"deploy() got unknown endpoint option(s) "
                            f"{', '.join(sorted(unknown))}; the options are "
                            f"{', '.join(endpoint_options.NAMES)}")
        body: dict[str, Any] = {"method": method, "path": path, "source": source,
                                "deps": list(deps)}
        for key, value in (*options.items(), ("domain", domain), ("origin", origin)):
            if value is not None:
                body[key] = value
        if services is not None:
            body["services"] = list(services)
        return self.request("PUT", f"/api/endpoints/{_q(name)}", body,
                            query={"wait": "1" if wait else "0"})

    def patch(self, name: str, **fields: Any) -> dict:
        return self.request("PATCH", f"/api/endpoints/{_q(name)}", fields)

    def source(self, name: str) -> str:
        return self.request("GET", f"/api/endpoints/{_q(name)}/source")["source"]

    def put_source(self, name: str, source: str, *, wait: bool = True) -> dict:
        return self.request("PUT", f"/api/endpoints/{_q(name)}/source", {"source": source},
                            query={"wait": "1" if wait else "0"})

    def build(self, name: str, *, wait: bool = True) -> dict:
        return self.request("POST", f"/api/endpoints/{_q(name)}/build",
                            query={"wait": "1" if wait else "0"})

    def start(self, name: str) -> dict:
        return self.request("POST", f"/api/endpoints/{_q(name)}/start")

    def stop(self, name: str) -> dict:
        return self.request("POST", f"/api/endpoints/{_q(name)}/stop")

    def restart(self, name: str) -> dict:
        return self.request("POST", f"/api/endpoints/{_q(name)}/restart")

    def remove(self, name: str) -> None:
        self.request("DELETE", f"/api/endpoints/{_q(name)}")

    def logs(self, name: str, tail: int = 200) -> list[dict]:
        """The endpoint's last log lines, oldest first: ``{"seq", "time", "source", "text"}``."""
        return self.request("GET", f"/api/endpoints/{_q(name)}/logs",
                            query={"tail": tail})["lines"]

    def recent_requests(self, name: str) -> list[dict]:
        """The endpoint's last answered requests with their phases (newest first)."""
        return self.request("GET", f"/api/endpoints/{_q(name)}/requests")["requests"]

    def metrics(self, name: str) -> dict:
        return self.request("GET", f"/api/endpoints/{_q(name)}/metrics")

    def revisions(self, name: str) -> list[dict]:
        return self.request("GET", f"/api/endpoints/{_q(name)}/revisions")["revisions"]

    # -- services and domains --------------------------------------------------------------

    def services(self) -> list[dict]:
        return self.request("GET", "/api/services")["services"]

    def service(self, name: str) -> dict:
        return self.request("GET", f"/api/services/{_q(name)}")

    def put_service(self, name: str, kind: str, config: dict | None = None) -> dict:
        return self.request("PUT", f"/api/services/{_q(name)}",
                            {"kind": kind, "config": config or {}})

    def delete_service(self, name: str) -> None:
        self.request("DELETE", f"/api/services/{_q(name)}")

    def cancel_build(self, name: str) -> bool:
        """Cancel the endpoint's queued or running build; True if there was one."""
        return bool(self.request("POST", f"/api/endpoints/{_q(name)}/build/cancel")
                    .get("cancelled"))

    def test_service(self, name: str) -> dict:
        return self.request("POST", f"/api/services/{_q(name)}/test")

    def domains(self) -> list[dict]:
        return self.request("GET", "/api/domains")["domains"]

    # -- events ----------------------------------------------------------------------------


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def service_test_report(name: str, result: dict) -> list[str]:
    """What a service's connection test says, in lines (the CLI and ``%edgebook`` print
    the same): ``name: ok (1.2 ms)``, or ``name: not reachable: ...`` and its cause."""
    if result.get("ok"):
        return [f"{name}: ok ({result.get('latency_ms', 0):.1f} ms)"]
    error = result.get("error") or {}
    lines = [f"{name}: not reachable: {error.get('message', result)}"]
    detail = error.get("detail")
    if detail and detail != error.get("message"):
        lines.append(f"  cause: {detail}")
    return lines


def _error_from(exc: urllib.error.HTTPError) -> AdminError:
    raw = exc.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return AdminError(exc.code, body.get("error_type", "error"), str(body["error"]), body)
    text = raw.decode("utf-8", "replace").strip()[:500] or exc.reason
    return AdminError(exc.code, "http_error", f"HTTP {exc.code}: {text}")


# -- starting a gateway in the background ----------------------------------------------------

def ensure_gateway(data_dir: str | None = None, *, timeout: float = 60.0,
                   serve_args: Sequence[str] = (), started_by: str = "",
                   idle_exit: float | None = None, owner_pid: int | None = None,
                   announce: Callable[[str], None] | None = None) -> AdminClient:
    """A client for the data dir's gateway, starting one in the background if none runs.

    The started gateway is its own process (new session, output in
    ``<data_dir>/logs/gateway.log``), outlives the caller (until ``idle_exit`` seconds
    without traffic, when given; with ``owner_pid``, until shortly after that process ends
    and traffic stops) and is reused by later callers. The data dir's start lock
    makes concurrent callers start at most one gateway. ``announce`` gets a line saying
    where a gateway started here is and how to stop it.
    """
    data_dir = os.path.abspath(data_dir or default_data_dir())
    info = find_live(data_dir)
    if info is None:
        try:
            info, started = find_or_start(data_dir, DetachedGateway, timeout=timeout,
                                          serve_args=serve_args, started_by=started_by,
                                          idle_exit=idle_exit, owner_pid=owner_pid)
        except StartError as exc:
            raise AdminError(0, "start_failed", str(exc)) from None
        if started is not None and announce is not None:
            announce(started_message(info, idle_exit, owner_pid))
    return AdminClient(info.admin_url, info.token, info=info)


def started_message(info: RuntimeInfo, idle_exit: float | None = None,
                    owner_pid: int | None = None) -> str:
    """What a caller that started a background gateway tells its user."""
    lasts = (f"it exits after {idle_exit:g} s without requests" if idle_exit
             else "it keeps running")
    if owner_pid:
        lasts += (f", or {ownerless_idle():g} s after process {owner_pid} (this one) has ended "
                  "and nothing reaches it")
    return (f"edgebook: started a background gateway (pid {info.pid}) for {info.data_dir}: "
            f"{info.url} (admin {info.admin_url}); {lasts}. List gateways with "
            f"'edgebook gateways', stop this one with 'edgebook stop-gateway --pid {info.pid}'.")
