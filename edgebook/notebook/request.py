"""Synchronous HTTP requests to endpoints, safe to call from a running kernel.

Requests go out on the calling thread with the standard library's ``http.client``: no event
loop is touched, so a cell can call :func:`request` while the kernel's own loop is running.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import socket
import time
from typing import Any, Mapping, Sequence
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from .response import EdgeResponse, SentRequest, status_reason

DEFAULT_TIMEOUT = 30.0
_NO_JSON = object()

Params = Mapping[str, Any] | Sequence[tuple[str, Any]] | None


class EdgeRequestError(ConnectionError):
    """The request got no HTTP response: connection refused, reset, or timed out."""


def is_absolute(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def resolve_url(path: str, base_url: str | None, params: Params = None) -> str:
    """``path`` joined to ``base_url`` (full URLs pass through), with ``params`` appended."""
    if is_absolute(path):
        url = path
    else:
        if base_url is None:
            raise ValueError(f"{path!r} is a path, and there is no gateway URL to put it on; "
                             "pass a full URL or connect to a gateway first")
        if not path.startswith("/"):
            path = "/" + path
        url = urljoin(base_url.rstrip("/") + "/", path.lstrip("/"))
    if params:
        parts = urlsplit(url)
        items = params.items() if isinstance(params, Mapping) else params
        extra = urlencode([(k, _param_str(v)) for k, v in items])
        query = f"{parts.query}&{extra}" if parts.query else extra
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return url


def _param_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_request(method: str, url: str, *, json: Any = _NO_JSON, data: Any = None,
                  headers: Mapping[str, str] | None = None) -> SentRequest:
    """The request to send: method, URL, headers (content type filled in) and body bytes."""
    method = method.upper()
    if json is not _NO_JSON and data is not None:
        raise ValueError("pass either json= or data=, not both")
    out: dict[str, str] = {}
    body: bytes | None = None
    if json is not _NO_JSON:
        body = jsonlib.dumps(json).encode()
        out["content-type"] = "application/json"
    elif isinstance(data, (bytes, bytearray, memoryview)):
        body = bytes(data)
        out["content-type"] = "application/octet-stream"
    elif isinstance(data, str):
        body = data.encode()
        out["content-type"] = "text/plain; charset=utf-8"
    elif isinstance(data, Mapping):
        body = urlencode([(k, _param_str(v)) for k, v in data.items()]).encode()
        out["content-type"] = "application/x-www-form-urlencoded"
    elif data is not None:
        raise TypeError(f"data= takes bytes, str or a dict, not {type(data).__name__}")
    for name, value in (headers or {}).items():
        # A caller's header replaces the default of the same name, whatever its case.
        for existing in [k for k in out if k.lower() == name.lower()]:
            del out[existing]
        out[name] = str(value)
    return SentRequest(method=method, url=url, headers=tuple(out.items()), body=body)


def send(sent: SentRequest, timeout: float = DEFAULT_TIMEOUT) -> EdgeResponse:
    """Send ``sent`` and read the whole response; blocks the calling thread only."""
    parts = urlsplit(sent.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {sent.url!r}")
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        started = time.perf_counter()
        conn.request(sent.method, target, body=sent.body, headers=dict(sent.headers))
        raw = conn.getresponse()
        content = raw.read()
        elapsed = time.perf_counter() - started
    except ConnectionRefusedError as exc:
        raise EdgeRequestError(f"nothing is listening at {parts.scheme}://{parts.netloc} "
                               "(connection refused); is the gateway running?") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise EdgeRequestError(f"no response to {sent.method} {sent.path} within {timeout:g} s") from exc
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise EdgeRequestError(f"{sent.method} {sent.path} failed: {exc}") from exc
    finally:
        conn.close()
    return EdgeResponse(status=raw.status, reason=raw.reason or status_reason(raw.status),
                        headers=raw.headers, content=content, elapsed=elapsed, request=sent)
