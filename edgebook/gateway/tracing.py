"""OpenTelemetry traces of data-plane requests, when the user has set OpenTelemetry up.

Nothing happens unless ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http``
are installed (``pip install 'edgebook[tracing]'``) and the standard variables ask for
traces (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, and
``OTEL_TRACES_EXPORTER`` not ``none``; ``OTEL_SERVICE_NAME`` names the gateway, default
``edgebook``). Then each request becomes a SERVER span whose parent is the caller's W3C
``traceparent`` (if any), with a child span per gateway phase and per service call, built
from the request's ``RequestTiming`` when it ends. The handler receives a ``traceparent``
naming the request's span, so spans a handler makes (or passes on) join the same trace.
Export happens in the background (a batch processor), never on the request's path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from ..servertiming import PHASES
from .timing import MARKS, RequestTiming

log = logging.getLogger(__name__)


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard OpenTelemetry variables ask for exported traces."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "otlp").lower()
    if "otlp" not in exporters:
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class Tracing:
    """The gateway's tracer; ``Tracing.from_env()`` is None when tracing is not set up."""

    def __init__(self, provider: Any):
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator,
        )
        self._provider = provider
        self._tracer = provider.get_tracer("edgebook.gateway")
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace

    @classmethod
    def from_env(cls) -> "Tracing | None":
        if not wanted():
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            log.warning("OpenTelemetry variables are set but %s is not installed; no traces "
                        "(pip install 'edgebook[tracing]')", exc.name)
            return None
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                   "edgebook")})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("exporting request traces over OTLP/HTTP")
        return cls(provider)

    def begin(self, method: str, route: str, path: str, headers: Mapping[str, str]) -> Any:
        """The request's span, a child of the caller's ``traceparent`` (if any). Named by
        the route's pattern (``GET /pets/{id}``, a name shared by every pet, as tracing
        backends expect); the concrete path is the ``url.path`` attribute."""
        parent = self._propagator.extract({k.lower(): v for k, v in headers.items()
                                           if k.lower() in ("traceparent", "tracestate")})
        return self._tracer.start_span(
            f"{method} {route}", context=parent, kind=self._trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route, "url.path": path})

    def traceparent(self, span: Any) -> dict[str, str]:
        """The W3C headers that name ``span`` as the parent, for the handler."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        return carrier

    def end(self, span: Any, timing: RequestTiming, status: int, endpoint: str | None) -> None:
        """Children for the phases and service calls, then the request's span ends."""
        now_ns, now = time.time_ns(), time.perf_counter()

        def ns(at: float) -> int:
            return now_ns - int((now - at) * 1e9)

        context = self._trace.set_span_in_context(span)
        previous = timing.start
        worker_context = context
        for phase, mark in zip(PHASES, MARKS):
            at = timing.marks.get(mark)
            if at is None:
                continue
            child = self._tracer.start_span(phase, context=context, start_time=ns(previous))
            child.end(end_time=ns(at))
            if phase == "worker":
                worker_context = self._trace.set_span_in_context(child)
            previous = at
        for kind, op, started, duration, size in timing.calls:
            attributes = {"edgebook.service.op": op}
            if size:  # ("rows" | "bytes", n): what the call moved
                attributes[f"edgebook.service.{size[0]}"] = size[1]
            call = self._tracer.start_span(f"{kind} {op}", context=worker_context,
                                           start_time=ns(started), attributes=attributes)
            call.end(end_time=ns(started + duration))
        span.set_attribute("http.response.status_code", status)
        if endpoint:
            span.set_attribute("edgebook.endpoint", endpoint)
        if status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end(end_time=ns(timing.marks.get("written", now)))

    def shutdown(self) -> None:
        self._provider.shutdown()  # flushes what is queued
