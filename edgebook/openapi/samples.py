"""Real request/response pairs per endpoint and status, kept for the OpenAPI examples.

``SampleStore.record`` runs on the data plane's hot path (the supervisor calls it once per
answered request), so it does as little as possible: a couple of dict lookups and a
``deque.append`` of references to the frames the gateway built anyway. Nothing is decoded,
copied or serialised until a document is asked for (``examples``). Bounds: the last
``per_status`` pairs for at most ``max_statuses`` statuses per endpoint; a pair whose
bodies together exceed ``max_body`` bytes is not kept (its status is still counted), so
the store holds at most endpoints x statuses x per_status small messages.

Samples belong to the revision that answered them: the first request answered by a new
revision drops the older revision's samples, so a document never shows a stub's 501
next to the finished handler's 200.
"""

from __future__ import annotations

import base64
import collections
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import GatewayError

#: Response headers worth showing in an example; the rest are transport details.
_SHOWN_HEADERS = ("content-type", "location", "cache-control", "allow", "retry-after")


@dataclass
class Sample:
    """One observed exchange, decoded for a document."""

    status: int
    params: dict[str, str]
    query: dict[str, str]
    request_content_type: str | None
    request_body: Any  # parsed JSON, text, or None (empty or binary)
    response_content_type: str | None
    response_body: Any
    response_headers: dict[str, str] = field(default_factory=dict)
    gateway_error: str | None = None  # error_type when the gateway answered, not the handler


class _EndpointSamples:
    __slots__ = ("revision", "by_status", "counts")

    def __init__(self, revision: str | None):
        self.revision = revision
        self.by_status: dict[int, collections.deque] = {}
        self.counts: dict[int, int] = {}


class SampleStore:
    """The last few real exchanges of every endpoint, per response status."""

    def __init__(self, per_status: int = 3, max_statuses: int = 16, max_body: int = 64 * 1024):
        self.per_status = per_status
        self.max_statuses = max_statuses
        self.max_body = max_body
        self._endpoints: dict[str, _EndpointSamples] = {}

    # -- the hot path ---------------------------------------------------------------------

    def record(self, name: str, revision: str | None, request: dict,
               response: dict | GatewayError) -> None:
        """Keep ``(request, response)`` for endpoint ``name``; ``response`` is the worker's
        response frame, or the ``GatewayError`` the client got instead."""
        samples = self._endpoints.get(name)
        if samples is None or samples.revision != revision:
            samples = self._endpoints[name] = _EndpointSamples(revision)
        if isinstance(response, GatewayError):
            status = response.status
        else:
            status = response.get("status")
            if not isinstance(status, int):
                return
        ring = samples.by_status.get(status)
        if ring is None:
            if len(samples.by_status) >= self.max_statuses:
                return
            ring = samples.by_status[status] = collections.deque(maxlen=self.per_status)
            samples.counts[status] = 0
        samples.counts[status] += 1
        size = len(request.get("body") or "")
        if not isinstance(response, GatewayError):
            size += len(response.get("body") or "")
        if size <= self.max_body:
            ring.append((request, response))

    # -- reading --------------------------------------------------------------------------

    def forget(self, name: str) -> None:
        self._endpoints.pop(name, None)

    def revision(self, name: str) -> str | None:
        samples = self._endpoints.get(name)
        return samples.revision if samples is not None else None

    def counts(self, name: str) -> dict[int, int]:
        """How many responses of each status the current revision gave (kept or not)."""
        samples = self._endpoints.get(name)
        return dict(samples.counts) if samples is not None else {}

    def examples(self, name: str) -> dict[int, list[Sample]]:
        """The kept exchanges of ``name``'s current revision, decoded, oldest first."""
        samples = self._endpoints.get(name)
        if samples is None:
            return {}
        out: dict[int, list[Sample]] = {}
        for status in sorted(samples.by_status):
            decoded = [decode_sample(status, req, resp) for req, resp in
                       list(samples.by_status[status])]
            out[status] = decoded
        return out


def decode_sample(status: int, request: dict, response: dict | GatewayError) -> Sample:
    """A request frame and its response frame (or gateway error) as a :class:`Sample`."""
    headers = request.get("headers") or {}
    request_type = headers.get("content-type")
    request_body = _body_value(request, request_type)
    if isinstance(response, GatewayError):
        return Sample(status=status, params=dict(request.get("params") or {}),
                      query=dict(request.get("query") or {}),
                      request_content_type=request_type, request_body=request_body,
                      response_content_type="application/json",
                      response_body={"error": response.message,
                                     "error_type": response.error_type,
                                     "request_id": request.get("request_id", "")},
                      gateway_error=response.error_type)
    response_headers = {str(k).lower(): str(v) for k, v in
                        (response.get("headers") or {}).items()}
    response_type = response_headers.get("content-type")
    return Sample(status=status, params=dict(request.get("params") or {}),
                  query=dict(request.get("query") or {}),
                  request_content_type=request_type, request_body=request_body,
                  response_content_type=response_type,
                  response_body=None if status in (204, 304) else
                  _body_value(response, response_type),
                  response_headers={k: v for k, v in response_headers.items()
                                    if k in _SHOWN_HEADERS})


def _body_value(frame: dict, content_type: str | None) -> Any:
    """The frame's body as JSON (when it parses), text, or None (empty or binary)."""
    body = frame.get("body")
    if body is None or body == "":
        return None
    if frame.get("body_encoding") == "base64" or isinstance(body, bytes):
        try:
            raw = body if isinstance(body, bytes) else base64.b64decode(body)
            body = raw.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(body, str):
        return None
    if content_type is None or "json" in content_type.lower():
        try:
            return json.loads(body)
        except ValueError:
            if content_type is not None:
                return body
    return body
