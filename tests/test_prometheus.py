"""``GET /metrics`` on the admin listener: Prometheus' text format, read back with
prometheus_client's own parser, from a real gateway with two processes."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_cli import HELLO, Server, cargo  # noqa: E402

from edgebook.client import AdminClient
from edgebook.gateway.metrics import DURATION_BUCKETS, EndpointMetrics, merge_shares


def test_the_histogram_counts_each_duration_in_its_bucket():
    metrics = EndpointMetrics()
    for seconds in (0.0001, 0.001, 0.0011, 100.0):
        metrics.record(seconds, 200)
    counts = metrics.snapshot()["duration_counts"]
    assert len(counts) == len(DURATION_BUCKETS) + 1
    assert counts[0] == 1  # <= 0.5 ms
    assert counts[1] == 1  # 0.001 is "le 0.001", as Prometheus counts
    assert counts[2] == 1  # 1.1 ms
    assert counts[-1] == 1  # past the largest bound: only in +Inf
    assert metrics.snapshot()["duration_sum_s"] == pytest.approx(100.0022)
    other = EndpointMetrics()
    other.record(0.0001, 200)
    merged = merge_shares([{**metrics.snapshot(), "latencies_s": []},
                           {**other.snapshot(), "latencies_s": []}])
    assert merged["duration_counts"][0] == 2 and sum(merged["duration_counts"]) == 5


def scrape(info, token) -> dict:
    request = urllib.request.Request(f"{info.admin_url}/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@cargo
def test_a_two_process_gateway_is_scraped_as_one(tmp_path):
    server = Server(tmp_path / ".edgebook", "--processes", "2")
    try:
        info = server.info
        client = AdminClient(info.admin_url, info.token)
        client.deploy("hello", "GET", "/hello", HELLO)
        client.deploy("idle", "GET", "/idle", HELLO)
        client.stop("idle")
        for _ in range(20):  # a new connection each: both processes answer some
            urllib.request.urlopen(f"{info.url}/hello", timeout=30).close()
        samples = scrape(info, info.token)
        hello = (("endpoint", "hello"),)
        assert samples[("edgebook_requests_total", hello)] == 20
        assert samples[("edgebook_responses_total", (("code", "2xx"), ("endpoint", "hello")))] \
            == 20
        assert samples[("edgebook_request_duration_seconds_count", hello)] == 20
        assert samples[("edgebook_request_duration_seconds_bucket",
                        (("endpoint", "hello"), ("le", "+Inf")))] == 20
        buckets = [value for (name, labels), value in samples.items()
                   if name == "edgebook_request_duration_seconds_bucket"
                   and ("endpoint", "hello") in labels]
        assert buckets == sorted(buckets) and len(buckets) == len(DURATION_BUCKETS) + 1
        assert 0 < samples[("edgebook_request_duration_seconds_sum", hello)] < 20 * 30
        assert samples[("edgebook_endpoint_state", (("endpoint", "hello"),
                                                   ("state", "running")))] == 1
        assert samples[("edgebook_endpoint_state", (("endpoint", "idle"),
                                                   ("state", "stopped")))] == 1
        assert samples[("edgebook_queued_requests", hello)] == 0
        assert samples[("edgebook_registry_version", ())] >= 3
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(info, "not-the-token")
        assert refused.value.code == 401
        refused.value.close()
    finally:
        server.terminate()
