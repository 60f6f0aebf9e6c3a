"""Where a request's time goes: its phases in the gateway, measured with a monotonic clock,
and the service calls its handler made, as a W3C ``Server-Timing`` header.

A ``RequestTiming`` is created when a request's head arrives and marked as the request
moves on: ``routed`` (endpoint chosen from the head), ``received`` (body read),
``dispatched`` (written to a worker's pipe), ``replied`` (the worker's reply read),
``written`` (the response handed to the socket). The phases are the differences between
consecutive marks:

    route   head in -> endpoint chosen
    recv    endpoint chosen -> body read           (the client sending its body)
    queue   body read -> written to a worker        (waiting for a free worker)
    worker  written to a worker -> reply read      (the handler, service calls included)
    write   reply read -> response written         (not in the header: it is being written)

so ``route + recv + queue + worker`` is the gateway's time before the response, to the
clock's resolution. Service calls carry their kind and operation (``db`` / ``db.query``)
and, where the reply tells, its size (``rows`` read or changed, ``bytes`` of a value or an
object), never their arguments. Cheap enough to be always on: a few ``perf_counter()`` calls and
a small list per request (measured in ``make bench``).
"""

from __future__ import annotations

import time
from typing import Any

from ..servertiming import PHASES

#: The mark that ends each of the header's ``PHASES``, in the same order.
MARKS = ("routed", "received", "dispatched", "replied")
#: Service kinds by the prefix of their operation (``db.query`` -> ``db``).
_KINDS = {"db": "db", "cache": "cache", "kv": "cache", "storage": "storage",
          "objects": "storage", "files": "storage"}


class RequestTiming:
    """The marks of one request (seconds from ``perf_counter()``) and its service calls."""

    __slots__ = ("start", "marks", "calls")

    def __init__(self, start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.marks: dict[str, float] = {}
        #: (kind, op, start, duration, size): size is ("rows" | "bytes", n) or None
        self.calls: list[tuple[str, str, float, float, tuple[str, int] | None]] = []

    def mark(self, name: str, at: float | None = None) -> None:
        self.marks[name] = time.perf_counter() if at is None else at

    def service_call(self, op: str, started: float, duration: float,
                     size: tuple[str, int] | None = None) -> None:
        kind = _KINDS.get(op.split(".", 1)[0], "service")
        self.calls.append((kind, op, started, duration, size))

    def phases(self) -> list[tuple[str, float, float]]:
        """``(name, offset_ms, duration_ms)`` of every phase whose end was marked."""
        out = []
        previous = self.start
        for phase, mark in zip(PHASES, MARKS):
            at = self.marks.get(mark)
            if at is None:
                continue
            out.append((phase, (previous - self.start) * 1e3, (at - previous) * 1e3))
            previous = at
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"phases": [{"name": n, "offset_ms": o, "duration_ms": d}
                           for n, o, d in self.phases()],
                "calls": [{"kind": k, "op": op, "offset_ms": (s - self.start) * 1e3,
                           "duration_ms": d * 1e3, **(dict((size,)) if size else {})}
                          for k, op, s, d, size in self.calls],
                "write_ms": _span(self.marks, "replied", "written")}

    def header(self) -> str:
        """The ``Server-Timing`` value: the phases, each service call, and ``total``."""
        parts = [f"{name};dur={duration:.3f}" for name, _, duration in self.phases()]
        for kind, op, _, duration, size in self.calls:
            extra = f";{size[0]}={size[1]}" if size else ""
            parts.append(f'{kind};desc="{op}";dur={duration * 1e3:.3f}{extra}')
        end = self.marks.get("replied")
        if end is not None:
            parts.append(f"total;dur={(end - self.start) * 1e3:.3f}")
        return ", ".join(parts)


def call_size(op: str, args: Any, reply: dict[str, Any]) -> tuple[str, int] | None:
    """What a service call moved, where its reply (or, for a write, its arguments) says:
    ``("rows", n)`` for SQL and document lists, ``("bytes", n)`` for cache values and
    objects; None for anything else or a failed call."""
    if not reply.get("ok"):
        return None
    result = reply.get("result")
    if isinstance(result, dict):
        if isinstance(result.get("rows"), list):
            return ("rows", len(result["rows"]))
        if isinstance(result.get("rows_affected"), int):
            return ("rows", result["rows_affected"])
        if op == "objects.get" and isinstance(result.get("size"), int):
            return ("bytes", result["size"])
    elif isinstance(result, list) and op.endswith(".list"):
        return ("rows", len(result))
    elif isinstance(result, str) and op == "redis.get":
        return ("bytes", len(result.encode()))
    if op == "objects.put" and isinstance(args, dict) and isinstance(args.get("data"), str):
        data = args["data"]
        return ("bytes", len(data) * 3 // 4 - data[-2:].count("="))
    return None


def _span(marks: dict[str, float], first: str, last: str) -> float | None:
    if first in marks and last in marks:
        return (marks[last] - marks[first]) * 1e3
    return None
