"""Request counters and recent latencies of one endpoint."""

from __future__ import annotations

import collections


class EndpointMetrics:
    """Counts requests and outcomes; keeps the latencies of the last ``window`` requests.

    ``record`` is called once per request on the data plane's hot path, so it only bumps
    counters; percentiles are computed when someone asks.
    """

    def __init__(self, window: int = 2048):
        self.requests = 0
        self.responses_by_class: collections.Counter[str] = collections.Counter()
        self.errors_by_type: collections.Counter[str] = collections.Counter()
        self._latencies: collections.deque[float] = collections.deque(maxlen=window)

    def record(self, seconds: float, status: int, error_type: str | None = None) -> None:
        self.requests += 1
        self.responses_by_class[f"{status // 100}xx"] += 1
        if error_type is not None:
            self.errors_by_type[error_type] += 1
        self._latencies.append(seconds)

    def snapshot(self) -> dict:
        """Counters plus p50/p90/p99 latency in milliseconds over the recent window."""
        latencies = sorted(self._latencies)
        return {
            "requests": self.requests,
            "responses": dict(self.responses_by_class),
            "errors": dict(self.errors_by_type),
            "latency_ms": {
                "window": len(latencies),
                "p50": _percentile(latencies, 0.50),
                "p90": _percentile(latencies, 0.90),
                "p99": _percentile(latencies, 0.99),
            },
        }


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile in milliseconds, or None without samples."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return round(sorted_values[index] * 1000.0, 3)
