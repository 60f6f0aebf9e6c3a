"""OpenTelemetry: a request's span, its phases and service calls, exported over OTLP/HTTP to
a real receiver on loopback and decoded with opentelemetry-proto."""

from __future__ import annotations

import gzip
import http.server
import json
import shutil
import threading
import urllib.request

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest)
from test_cli import Server  # noqa: E402

from edgebook.client import AdminClient  # noqa: E402
from edgebook.gateway import tracing  # noqa: E402
from edgebook.gateway.timing import RequestTiming  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint that keeps every span it is sent."""

    def __init__(self):
        self.spans = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                receiver.arrived.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver(monkeypatch):
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                       f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edgebook-test")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_is_exported_unless_asked(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.Tracing.from_env() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.Tracing.from_env() is None


def test_request_span_with_phases_and_service_calls_reaches_the_receiver(receiver):
    tracer = tracing.Tracing.from_env()
    assert tracer is not None
    span = tracer.begin("GET", "/pets/{id}", "/pets/42",
                        {"Traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    handed_on = tracer.traceparent(span)["traceparent"]
    timing = RequestTiming()
    t0 = timing.start
    for name, offset in (("routed", 0.0001), ("received", 0.0002), ("dispatched", 0.0010),
                         ("replied", 0.0100), ("written", 0.0102)):
        timing.mark(name, t0 + offset)
    timing.service_call("db.query", t0 + 0.002, 0.005, ("rows", 7))
    tracer.end(span, timing, 200, "pets")
    tracer.shutdown()
    assert receiver.arrived.wait(10)

    spans = {s.name: s for s in receiver.spans}
    assert set(spans) == {"GET /pets/{id}", "recv", "route", "queue", "worker", "db db.query"}
    root = spans["GET /pets/{id}"]
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == PARENT_ID
    assert handed_on.split("-")[1:3] == [TRACE_ID, root.span_id.hex()]  # the handler's parent
    for phase in ("recv", "route", "queue", "worker"):
        assert spans[phase].parent_span_id == root.span_id
    assert spans["db db.query"].parent_span_id == spans["worker"].span_id
    call = {a.key: a.value for a in spans["db db.query"].attributes}
    assert call["edgebook.service.op"].string_value == "db.query"
    assert call["edgebook.service.rows"].int_value == 7  # what the call read, never the SQL
    durations = sum(spans[p].end_time_unix_nano - spans[p].start_time_unix_nano
                    for p in ("recv", "route", "queue", "worker"))
    assert durations == pytest.approx(10_000_000, abs=2_000)  # 10 ms, to the clock
    attributes = {a.key: a.value for a in root.attributes}
    assert attributes["http.response.status_code"].int_value == 200
    assert attributes["http.route"].string_value == "/pets/{id}"
    assert attributes["url.path"].string_value == "/pets/42"


TRACE_ECHO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"traceparent": req.header("traceparent"), "id": req.path_param("id")}))
}

handler_loop!(handle);
"""


def test_a_live_gateway_traces_a_request_and_hands_the_trace_to_the_handler(receiver, tmp_path):
    if shutil.which("cargo") is None:
        pytest.skip("needs cargo to build the handler")
    server = Server(tmp_path / ".edgebook")
    try:
        AdminClient(server.info.admin_url, server.info.token).deploy(
            "pet", "GET", "/pets/{id}", TRACE_ECHO)
        asked = urllib.request.Request(f"{server.info.url}/pets/42", headers={
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        with urllib.request.urlopen(asked, timeout=30) as response:
            seen = json.loads(response.read())
    finally:
        assert server.terminate() == 0  # the exporter flushes on the way out
    assert receiver.arrived.wait(10)
    roots = [s for s in receiver.spans if s.name.startswith("GET ")]
    assert [s.name for s in roots] == ["GET /pets/{id}"]  # the route, not /pets/42
    root = roots[0]
    attributes = {a.key: a.value.string_value for a in root.attributes}
    assert attributes["http.route"] == "/pets/{id}" and attributes["url.path"] == "/pets/42"
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == PARENT_ID
    assert seen["id"] == "42"
    assert seen["traceparent"].split("-")[1:3] == [TRACE_ID, root.span_id.hex()]
