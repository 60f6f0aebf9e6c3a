"""edgebook.bench: bounded load tests from a private thread, reports, plots, comparison."""

import os
import re
import subprocess
import sys
import textwrap

import pytest
from matplotlib.figure import Figure

from edgebook.notebook.bench import BenchError, bench, check_loopback, compare
from tiny_app import TinyServer


@pytest.fixture(scope="module")
def server():
    with TinyServer() as s:
        yield s


def test_counts_percentiles_and_samples(server):
    report = bench("POST", "/echo/b", n=300, concurrency=4, json={"a": 1}, base_url=server.url)
    assert report.requests == 300
    assert report.errors == {} and report.status_counts == {200: 300}
    assert report.throughput > 0
    df = report.df
    assert list(df.index) == ["POST /echo/b"]
    for col in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "req_per_s", "errors"):
        assert col in df.columns
    row = df.iloc[0]
    assert row.p50_ms <= row.p90_ms <= row.p99_ms <= row.max_ms
    samples = report.samples
    assert list(samples.columns) == ["start_s", "latency_ms", "status"]
    assert samples["start_s"].is_monotonic_increasing is not None
    assert (samples["latency_ms"] > 0).all()


def test_errors_by_status(server):
    report = bench("GET", "/status/503", n=50, concurrency=2, base_url=server.url)
    assert report.errors == {503: 50}
    assert "errors by status: 503: 50" in report.notes()[0]


def test_chunked_responses(server):
    report = bench("GET", "/chunked", n=40, concurrency=2, base_url=server.url)
    assert report.status_counts == {200: 40}


def test_head_responses_have_no_body_whatever_content_length_says(server):
    report = bench("HEAD", "/echo/h", n=20, concurrency=2, timeout=2, base_url=server.url)
    assert report.status_counts == {200: 20} and report.errors == {}


def test_duration_bounds_the_run(server):
    report = bench("GET", "/slow", params={"s": 0.05}, duration=0.5, concurrency=2,
                   base_url=server.url)
    assert 0.4 < report.wall < 1.5
    assert 4 <= report.requests <= 30


def test_with_no_bounds_a_run_lasts_two_seconds(server):
    report = bench("GET", "/slow", params={"s": 0.1}, concurrency=2, base_url=server.url)
    assert report.wall >= 1.9  # not 1000 requests that finish in a blink
    assert report.requests < 1000


def test_breakdown_by_percentile_from_server_timing(server):
    report = bench("GET", "/timed", n=400, concurrency=2, base_url=server.url)
    breakdown = report.breakdown()
    assert list(breakdown.index) == ["p50", "p90", "p99"]
    p50, p99 = breakdown.loc["p50"], breakdown.loc["p99"]
    assert p50.queue_ms == pytest.approx(0.1) and p99.queue_ms == pytest.approx(20.0)
    assert p99.services_ms == pytest.approx(0.3) and p99.worker_ms == pytest.approx(0.5)
    assert report.reading().startswith("p99 is ") and "more workers would help" in \
        report.reading()
    assert "where the time went" in report._repr_html_()


def test_no_breakdown_without_server_timing(server):
    report = bench("GET", "/echo", n=20, concurrency=2, base_url=server.url)
    assert report.breakdown() is None and report.reading() is None


def test_timeouts_count_as_no_response(server):
    report = bench("GET", "/slow", params={"s": 2}, n=2, concurrency=2, timeout=0.2,
                   base_url=server.url)
    assert report.errors == {0: 2}


def test_limits_and_loopback_only(server):
    with pytest.raises(ValueError, match="n must be"):
        bench("GET", "/echo", n=0, base_url=server.url)
    with pytest.raises(ValueError, match="concurrency"):
        bench("GET", "/echo", n=1, concurrency=100000, base_url=server.url)
    with pytest.raises(ValueError, match="duration"):
        bench("GET", "/echo", duration=10000, base_url=server.url)
    with pytest.raises(BenchError, match="loopback"):
        bench("GET", "http://192.0.2.1/x", n=1)
    check_loopback("127.0.0.2")
    check_loopback("localhost")
    check_loopback("::1")


def test_nothing_listening_raises():
    with pytest.raises(BenchError, match="nothing is listening"):
        bench("GET", "http://127.0.0.1:9/x", n=3, concurrency=1)


def test_plot_display_and_compare(server):
    a = bench("GET", "/echo", n=100, concurrency=2, base_url=server.url)
    b = bench("GET", "/status/500", n=50, concurrency=2, base_url=server.url)
    fig = a.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    page = a._repr_html_()
    assert "data:image/png;base64," in page and "p99_ms" in page
    assert fig.patch.get_alpha() == 0.0  # readable on the dark theme as on the light one
    assert re.search(r"<td>\d+\.\d\d</td>", page)  # milliseconds to the hundredth
    both = compare(a, b, labels=["before", "after"])
    assert list(both.df.index) == ["before", "after"]
    assert both.df.loc["after", "errors"] == 50
    assert isinstance(both.plot(), Figure)
    assert "2 runs compared" in both._repr_html_()
    same = compare(a, a)
    assert same.df.index.is_unique
    with pytest.raises(ValueError):
        compare(a, labels=["x", "y"])


def test_interrupt_returns_partial_results(tmp_path):
    """SIGINT (what a kernel interrupt delivers) mid-run: partial report, no traceback."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, threading, os, signal, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from tiny_app import TinyServer
        from edgebook.notebook.bench import bench
        with TinyServer() as server:
            threading.Timer(0.8, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            t = time.monotonic()
            report = bench("GET", "/slow", params={{"s": 0.02}}, n=100000, concurrency=4,
                           base_url=server.url)
            print("interrupted", report.interrupted, report.requests,
                  round(time.monotonic() - t, 1))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    flag, requests, seconds = out.stdout.split()[1:]
    assert flag == "True" and 0 < int(requests) < 100000 and float(seconds) < 5
    assert "returning partial results" in out.stderr


def test_the_generator_outpaces_a_tornado_gateway():
    """The generator's CPU cost per request is a fraction of a Tornado gateway's (about
    140 us), so a bench measures the endpoint, not the client. CPU time rather than
    throughput is asserted: it does not depend on what else the machine runs."""
    server = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__),
                                                            "resources", "fixed_http_server.py")],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        report = bench("GET", f"http://127.0.0.1:{port}/x", n=20000, concurrency=32)
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()
    assert report.status_counts == {200: 20000}
    per_request = report.client_cpu / report.requests
    assert per_request < 70e-6, f"{per_request * 1e6:.0f} us of CPU per request"
