"""The gateway's metrics in Prometheus' text format (``GET /metrics`` on the admin listener).

Built from the same numbers as the admin API's ``/api/endpoints/{name}/metrics`` (over every
process with ``serve --processes N``) when a scraper asks, with ``prometheus_client`` writing
the format; the data plane keeps its own counters and pays nothing for this. Counters count
from the gateway's start; a fleet's totals are what Prometheus sums over its gateways.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, InfoMetricFamily, Metric)

from .._version import __version__
from ..gateway.core import Gateway
from ..gateway.metrics import DURATION_BUCKETS

#: What ``GET /metrics`` answers with.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def exposition(gateway: Gateway) -> bytes:
    """Every endpoint's counters, histogram and gauges, and the gateway's own, as text."""
    records = gateway.registry.endpoints()
    shares = await asyncio.gather(*(gateway.all_metrics(r.name) for r in records))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(_families(gateway, [(r.name, r.state, m)
                                                     for r, m in zip(records, shares)])))
    return generate_latest(registry)


class _Collected:
    """A collector that hands over families made beforehand (the numbers are read
    asynchronously; ``generate_latest`` collects synchronously)."""

    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _families(gateway: Gateway,
              endpoints: list[tuple[str, str, dict[str, Any]]]) -> list[Metric]:
    """``endpoints``: (name, registry state, metrics or {} when nothing runs it here)."""
    info = InfoMetricFamily("edgebook_gateway", "This gateway: version and role",
                            value={"version": __version__, "role": str(gateway.role)})
    version = GaugeMetricFamily("edgebook_registry_version",
                                "The registry version this gateway serves")
    version.add_metric([], gateway.registry.generation())
    inflight_all = GaugeMetricFamily("edgebook_gateway_inflight_requests",
                                     "Requests this gateway process is answering")
    inflight_all.add_metric([], gateway.inflight)

    requests = CounterMetricFamily("edgebook_requests", "Requests answered, by endpoint",
                                   labels=["endpoint"])
    responses = CounterMetricFamily("edgebook_responses",
                                    "Responses by endpoint and status class",
                                    labels=["endpoint", "code"])
    errors = CounterMetricFamily("edgebook_errors",
                                 "Gateway-made failures (timeouts, crashed workers, ...) by "
                                 "endpoint and type", labels=["endpoint", "type"])
    duration = HistogramMetricFamily("edgebook_request_duration_seconds",
                                     "Time from the request's head to its reply, by endpoint",
                                     labels=["endpoint"])
    inflight = GaugeMetricFamily("edgebook_inflight_requests",
                                 "Requests a worker is running, by endpoint",
                                 labels=["endpoint"])
    queued = GaugeMetricFamily("edgebook_queued_requests",
                               "Requests waiting for a free worker, by endpoint",
                               labels=["endpoint"])
    state = GaugeMetricFamily("edgebook_endpoint_state",
                              "1 for the state each endpoint is in", labels=["endpoint", "state"])
    for name, registry_state, m in sorted(endpoints, key=lambda e: e[0]):
        state.add_metric([name, str(registry_state)], 1)
        if not m:
            continue
        requests.add_metric([name], m.get("requests") or 0)
        for code, count in sorted((m.get("responses") or {}).items()):
            responses.add_metric([name, code], count)
        for kind, count in sorted((m.get("errors") or {}).items()):
            errors.add_metric([name, kind], count)
        counts = m.get("duration_counts") or [0] * (len(DURATION_BUCKETS) + 1)
        buckets, running = [], 0
        for bound, count in zip((*map(_bound, DURATION_BUCKETS), "+Inf"), counts):
            running += count
            buckets.append((bound, running))
        duration.add_metric([name], buckets, m.get("duration_sum_s") or 0.0)
        inflight.add_metric([name], m.get("inflight") or 0)
        queued.add_metric([name], m.get("queue_depth") or 0)
    return [info, version, inflight_all, requests, responses, errors, duration, inflight,
            queued, state]


def _bound(seconds: float) -> str:
    return repr(float(seconds))
