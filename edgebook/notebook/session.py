"""The gateway this Python process talks to: URLs, admin client, request history.

A notebook has one current gateway, found the first time it is needed:

1. ``edgebook.connect(...)`` with an explicit URL or data dir, if the user called it;
2. ``EDGEBOOK_DATA_DIR`` (the Jupyter server extension sets it for the kernels it starts);
3. the nearest ``.edgebook`` directory with a live runtime file, from the working directory
   up (a notebook in a sub-folder finds the project's gateway);
4. otherwise ``.edgebook`` in the working directory, where a background gateway is started
   (a separate process that outlives the kernel and is reused by the next one).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Mapping
from urllib.parse import urlsplit

from .. import paths
from ..client import AdminClient, ensure_gateway, remote_configured
from ..discovery import find_live, pid_alive
from ..router import Route, Router
from .history import History
from .request import (DEFAULT_TIMEOUT, _NO_JSON, EdgeResponse, Params, build_request,
                      is_absolute, resolve_url, send)

DATA_DIR_NAME = paths.DATA_DIR_NAME
ROUTES_TTL = 2.0  # seconds an endpoint list is reused for naming history entries
#: How long a gateway started by a kernel waits without traffic before it exits (seconds).
KERNEL_IDLE_EXIT = 3600.0


class NoAdminError(RuntimeError):
    """The session knows only a data-plane URL, so it cannot manage endpoints."""


class Session:
    """One gateway: ``data_url`` (data plane), ``admin`` (an AdminClient or None), history."""

    def __init__(self, data_url: str, admin: Any = None, data_dir: str | None = None,
                 history: History | None = None):
        self.data_url = data_url.rstrip("/")
        self.admin = admin
        self.data_dir = data_dir
        self.history = history or History(endpoint_of=self.endpoint_of, logs_of=self.logs_of)
        self._routes: tuple[float, Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = f" data_dir={self.data_dir!r}" if self.data_dir else ""
        return f"<edgebook Session {self.data_url}{where}>"

    # -- discovery ---------------------------------------------------------------------------

    @classmethod
    def from_data_dir(cls, data_dir: str, *, start: bool = True,
                      history: History | None = None) -> "Session":
        """A session for ``data_dir``'s gateway, starting one in the background if allowed;
        with ``EDGEBOOK_ADMIN_URL`` set, the remote gateway it names (client.py)."""
        if remote_configured():
            admin = AdminClient.remote()
            return cls(admin.url or admin.health().get("url"), admin=admin, history=history)
        admin = (ensure_gateway(data_dir, started_by=f"a notebook kernel (pid {os.getpid()})",
                                idle_exit=kernel_idle_exit(), owner_pid=os.getpid(),
                                announce=print)
                 if start else AdminClient.from_data_dir(data_dir))
        url = admin.url or admin.health().get("url")
        session = cls(url, admin=admin, data_dir=os.path.abspath(data_dir), history=history)
        return session

    def alive(self) -> bool:
        """True while the gateway this session found is still the one running."""
        if self.admin is None or self.data_dir is None:
            return True
        info = getattr(self.admin, "info", None)
        return info is None or pid_alive(info.pid)

    def require_admin(self):
        if self.admin is None:
            raise NoAdminError(f"this session talks to {self.data_url} without an admin "
                               "token; use edgebook.connect(data_dir=...) to manage endpoints")
        return self.admin

    # -- naming requests after endpoints ----------------------------------------------------

    def router(self):
        """A router over the gateway's current endpoints (cached for a moment)."""
        now = time.monotonic()
        with self._lock:
            if self._routes is not None and now - self._routes[0] < ROUTES_TTL:
                return self._routes[1]
        router = Router()
        for ep in self.admin.endpoints():
            try:
                router.set(Route(ep["name"], ep["method"], ep["path"], ep.get("domain")))
            except (KeyError, ValueError):
                continue
        with self._lock:
            self._routes = (now, router)
        return router

    def forget_routes(self) -> None:
        with self._lock:
            self._routes = None

    def endpoint_of(self, method: str, url: str) -> str | None:
        """The name of the endpoint that answers ``method url`` on this gateway, if any."""
        if self.admin is None:
            return None
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.data_url:
            return None
        try:
            match = self.router().match(method, parts.path or "/", parts.hostname or "")
        except Exception:  # no route (404/405) or the admin API is unreachable
            return None
        return match.route.name

    def logs_of(self, name: str) -> list[tuple[float, str]]:
        """The endpoint's recent stderr lines as ``(time, text)``; empty if unavailable."""
        if self.admin is None:
            return []
        try:
            lines = self.admin.logs(name, tail=500)
        except Exception:
            return []
        return [(float(line["time"]), str(line.get("text", ""))) for line in lines
                if isinstance(line, dict) and line.get("time") is not None]


# -- the current session -----------------------------------------------------------------------

_current: Session | None = None
_current_lock = threading.Lock()


def find_data_dir(start: str | None = None) -> str:
    """The data dir to use: EDGEBOOK_DATA_DIR, the nearest live one upwards, or ./.edgebook."""
    env = paths.env_data_dir()
    if env:
        return env
    here = os.path.abspath(start or os.getcwd())
    probe = here
    while True:
        candidate = os.path.join(probe, DATA_DIR_NAME)
        if os.path.isdir(candidate) and find_live(candidate, check_health=False) is not None:
            return candidate
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return os.path.join(here, DATA_DIR_NAME)


def kernel_idle_exit() -> float | None:
    """How long a gateway a kernel started lives without requests or admin calls:
    ``EDGEBOOK_IDLE_EXIT`` seconds (0: for ever), default an hour. The kernel starts a new
    one on its next call."""
    value = os.environ.get("EDGEBOOK_IDLE_EXIT", "")
    try:
        seconds = float(value) if value else KERNEL_IDLE_EXIT
    except ValueError:
        seconds = KERNEL_IDLE_EXIT
    return seconds if seconds > 0 else None


def current(*, start: bool = True) -> Session:
    """The current session, found (and its gateway started) on first use."""
    global _current
    with _current_lock:
        session = _current
        if session is not None and session.alive():
            return session
        history = session.history if session is not None else None
        data_dir = session.data_dir if session is not None and session.data_dir else find_data_dir()
        _current = Session.from_data_dir(data_dir, start=start, history=history)
        if history is not None:
            history.endpoint_of = _current.endpoint_of
            history.logs_of = _current.logs_of
        return _current


def connect(url: str | None = None, *, data_dir: str | None = None, start: bool = True,
            admin_url: str | None = None, token: str | None = None) -> Session:
    """Make a gateway the current one: by data dir (with admin access), by data-plane URL
    (requests only), or a remote gateway by its admin URL and token (``url``, if given, is
    its data plane as this machine reaches it)."""
    global _current
    if admin_url is not None:
        if data_dir is not None:
            raise ValueError("pass admin_url or data_dir, not both")
        admin = AdminClient.remote(admin_url, token, url)
        session = Session(admin.url or admin.health().get("url"), admin=admin)
    elif (url is None) == (data_dir is None):
        raise ValueError("pass either a data-plane url or a data_dir")
    else:
        session = (Session(url) if url is not None
                   else Session.from_data_dir(data_dir, start=start))
    with _current_lock:
        _current = session
    return session


def peek() -> Session | None:
    """The current session if one was found already, without discovering one."""
    return _current


# -- the notebook API ---------------------------------------------------------------------------

def request(method: str, path: str, *, json: Any = _NO_JSON, data: Any = None,
            headers: Mapping[str, str] | None = None, params: Params = None,
            timeout: float = DEFAULT_TIMEOUT, base_url: str | None = None,
            session=None) -> EdgeResponse:
    """Send one request to an endpoint and return an :class:`EdgeResponse`.

    ``path`` is a path on the current gateway's data plane (``/hello``) or a full URL.
    ``json=`` sends a JSON body, ``data=`` sends bytes, text or a form-encoded dict.
    The exchange is recorded in the session's request history.
    """
    if session is None and base_url is None and not is_absolute(path):
        session = current()
    if base_url is None and session is not None:
        base_url = session.data_url
    url = resolve_url(path, base_url, params)
    sent = build_request(method, url, json=json, data=data, headers=headers)
    response = send(sent, timeout=timeout)
    if session is not None:
        session.history.record(response)
    return response


def history(name: str | None = None):
    """The last requests sent from this kernel (per endpoint) as a DataFrame."""
    session = peek()
    return History().df() if session is None else session.history.df(name)


def replay(n: int = -1) -> EdgeResponse:
    """Send request ``n`` of :func:`history` again (default: the last one)."""
    return _history().replay(n)


def curl(n: int = -1) -> str:
    """Request ``n`` of :func:`history` as a curl command (default: the last one)."""
    return _history().curl(n)


def _history() -> History:
    session = peek()
    if session is None:
        raise IndexError("no requests sent yet: the history is empty")
    return session.history
