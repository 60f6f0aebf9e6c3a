"""A small synchronous client for the gateway's admin API.

Uses only ``urllib``, so it is safe to call from a Jupyter kernel whose thread already runs
an asyncio loop (no loop is touched). ``AdminClient.from_data_dir`` finds the gateway through
the runtime file; ``ensure_gateway`` starts one in the background when none is running.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from .runtime import RuntimeInfo, find_live, pid_alive, read_runtime, RuntimeFileError

log = logging.getLogger("edgebook.client")

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
    return os.environ.get("EDGEBOOK_DATA_DIR") or os.path.join(os.getcwd(), ".edgebook")


class AdminClient:
    """Calls the admin API at ``admin_url`` with the bearer ``token``."""

    def __init__(self, admin_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
                 info: RuntimeInfo | None = None):
        self.admin_url = admin_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.info = info

    @classmethod
    def from_data_dir(cls, data_dir: str | None = None, **kwargs: Any) -> AdminClient:
        """A client for the live gateway of ``data_dir``; ``GatewayNotRunningError`` if none."""
        data_dir = data_dir or default_data_dir()
        info = find_live(data_dir)
        if info is None:
            raise GatewayNotRunningError(
                f"no edgebook gateway is running for {data_dir}; start one with "
                f"`edgebook serve --data-dir {data_dir}`")
        return cls(info.admin_url, info.token, info=info, **kwargs)

    @property
    def url(self) -> str | None:
        """The data plane's base URL, when known from the runtime file."""
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
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:
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

    def deploy(self, name: str, method: str, path: str, source: str, *,
               deps: Sequence[str] = (), workers: int | None = None,
               timeout: float | None = None, max_body: int | None = None,
               profile: str | None = None, domain: str | None = None,
               services: Sequence[str] | None = None, origin: dict | None = None,
               wait: bool = True) -> dict:
        """Create or update an endpoint, build it and deploy it.

        With ``wait`` (default) returns ``{"endpoint": ..., "build": ...}`` once the endpoint
        is running; raises ``AdminError`` (``build_failed`` with diagnostics, or
        ``deploy_failed``) otherwise. Without ``wait`` returns as soon as the build started.
        """
        body: dict[str, Any] = {"method": method, "path": path, "source": source,
                                "deps": list(deps)}
        for key, value in (("workers", workers), ("timeout", timeout), ("max_body", max_body),
                           ("profile", profile), ("domain", domain), ("origin", origin)):
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

    def logs(self, name: str, tail: int = 200) -> list[str]:
        return self.request("GET", f"/api/endpoints/{_q(name)}/logs",
                            query={"tail": tail})["lines"]

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

    def events(self, timeout: float | None = None) -> Iterator[dict]:
        """Yield the admin event stream's events as dicts (blocking; ends on disconnect)."""
        req = urllib.request.Request(self.admin_url + "/api/events",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Accept": "text/event-stream"})
        try:
            response = urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        with response:
            data: list[str] = []
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    yield json.loads("\n".join(data))
                    data = []


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


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
                   serve_args: Sequence[str] = ()) -> AdminClient:
    """A client for the data dir's gateway, starting one in the background if none runs.

    The started gateway is its own process (new session, output in
    ``<data_dir>/logs/gateway.log``), outlives the caller and is reused by later callers.
    A lock file makes concurrent callers start at most one gateway.
    """
    data_dir = os.path.abspath(data_dir or default_data_dir())
    os.makedirs(os.path.join(data_dir, "logs"), exist_ok=True)
    info = find_live(data_dir)
    if info is not None:
        return AdminClient(info.admin_url, info.token, info=info)
    with open(os.path.join(data_dir, ".start.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            info = find_live(data_dir)
            if info is None:
                info = _spawn_and_wait(data_dir, timeout, serve_args)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return AdminClient(info.admin_url, info.token, info=info)


def _spawn_and_wait(data_dir: str, timeout: float, serve_args: Sequence[str]) -> RuntimeInfo:
    log_path = os.path.join(data_dir, "logs", "gateway.log")
    argv = [sys.executable, "-m", "edgebook", "serve", "--data-dir", data_dir,
            "--port", "0", *serve_args]
    pid = _spawn_detached(argv, log_path)
    log.info("started a background gateway (pid %d) for %s", pid, data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise AdminError(0, "start_failed",
                             f"the background gateway exited; see {log_path}:\n"
                             f"{_tail(log_path)}")
        try:
            info = read_runtime(data_dir)
        except RuntimeFileError:
            info = None
        if info is not None and info.pid == pid:
            found = find_live(data_dir)
            if found is not None:
                return found
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    raise AdminError(0, "start_timeout",
                     f"the background gateway did not come up within {timeout:.0f} s; "
                     f"see {log_path}:\n{_tail(log_path)}")


_DETACH = ("import subprocess, sys\n"
           "with open(sys.argv[1], 'ab') as out:\n"
           "    child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=out,\n"
           "                             stderr=out, start_new_session=True, close_fds=True)\n"
           "print(child.pid, flush=True)\n"
           "child.returncode = 0  # detached on purpose: nobody here waits for it\n")


def _spawn_detached(argv: Sequence[str], log_path: str) -> int:
    """Start ``argv`` as a daemon: through a short-lived parent, so the gateway is adopted
    by init (no zombie in a kernel that outlives it) and outlives the caller; its pid."""
    done = subprocess.run([sys.executable, "-c", _DETACH, log_path, *argv],
                          capture_output=True, text=True, timeout=30, check=False)
    try:
        return int(done.stdout.strip())
    except ValueError:
        raise AdminError(0, "start_failed",
                         f"could not start a background gateway: {done.stderr.strip()}") from None


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""
