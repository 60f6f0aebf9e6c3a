"""Request counters, a latency histogram and recent latencies of one endpoint."""

from __future__ import annotations

import bisect
import collections

#: Upper bounds (seconds) of the request-duration histogram's buckets; a last bucket holds
#: everything slower (Prometheus' ``+Inf``).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0, 30.0)


class EndpointMetrics:
    """Counts requests and outcomes, counts every request's duration into a histogram
    (``DURATION_BUCKETS``), and keeps the latencies of the last ``window`` requests.

    ``record`` is called once per request on the data plane's hot path, so it only bumps
    counters; percentiles are computed when someone asks.
    """

    def __init__(self, window: int = 2048):
        self.requests = 0
        self.responses_by_class: collections.Counter[str] = collections.Counter()
        self.errors_by_type: collections.Counter[str] = collections.Counter()
        self._latencies: collections.deque[float] = collections.deque(maxlen=window)
        #: requests per bucket (not cumulative), the last one past the largest bound
        self.duration_counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0

    def record(self, seconds: float, status: int, error_type: str | None = None) -> None:
        self.requests += 1
        self.responses_by_class[f"{status // 100}xx"] += 1
        if error_type is not None:
            self.errors_by_type[error_type] += 1
        self._latencies.append(seconds)
        self.duration_counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def latencies(self) -> list[float]:
        """The recent window's latencies in seconds, oldest first."""
        return list(self._latencies)

    def snapshot(self) -> dict:
        """Counters plus p50/p90/p99 latency in milliseconds over the recent window."""
        return {
            "requests": self.requests,
            "responses": dict(self.responses_by_class),
            "errors": dict(self.errors_by_type),
            "latency_ms": latency_summary(self._latencies),
            "duration_counts": list(self.duration_counts),
            "duration_sum_s": self.duration_sum,
        }


def latency_summary(latencies) -> dict:
    ordered = sorted(latencies)
    return {"window": len(ordered), "p50": _percentile(ordered, 0.50),
            "p90": _percentile(ordered, 0.90), "p99": _percentile(ordered, 0.99)}


def merge_shares(shares: list[dict]) -> dict:
    """One endpoint's metrics over several processes (``serve --processes N``), from each
    process's ``Supervisor.metrics(name, latencies=True)``, the primary's first: counters
    and queues added up, percentiles over all the processes' latency windows together;
    state and revision are the primary's."""
    merged = {key: value for key, value in shares[0].items() if key != "latencies_s"}
    for key in ("requests", "inflight", "queue_depth"):
        merged[key] = sum(share.get(key) or 0 for share in shares)
    for key in ("responses", "errors"):
        total: collections.Counter[str] = collections.Counter()
        for share in shares:
            total.update(share.get(key) or {})
        merged[key] = dict(total)
    counts = [share.get("duration_counts") for share in shares]
    merged["duration_counts"] = [sum(column) for column in zip(*(c for c in counts if c))]
    merged["duration_sum_s"] = sum(share.get("duration_sum_s") or 0.0 for share in shares)
    merged["latency_ms"] = latency_summary(
        [value for share in shares for value in share.get("latencies_s") or ()])
    merged["processes"] = len(shares)
    return merged


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile in milliseconds, or None without samples."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return round(sorted_values[index] * 1000.0, 3)
