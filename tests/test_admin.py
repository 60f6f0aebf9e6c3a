"""The admin API over loopback: auth on every route, deploy semantics, SSE, services,
OpenAPI, and the synchronous AdminClient against it."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from tornado.httpclient import AsyncHTTPClient

from edgebook.admin.routes import ROUTES, openapi_document
from edgebook.client import AdminClient, AdminError

from control_plane_helpers import start_gateway, stop_gateway

TOKEN = "secret-token"


def run(coro):
    return asyncio.run(coro)


class Api:
    def __init__(self, base, token=TOKEN):
        self.base = base
        self.token = token
        self.http = AsyncHTTPClient(force_instance=True)

    async def call(self, method, path, body=None, token="default", headers=None, **kwargs):
        token = self.token if token == "default" else token
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = ""
        response = await self.http.fetch(self.base + path, method=method, body=data,
                                         headers=headers, raise_error=False,
                                         request_timeout=30, **kwargs)
        payload = json.loads(response.body) if response.body and response.headers.get(
            "Content-Type", "").startswith("application/json") else None
        return response.code, payload, response


class SseStream:
    """A raw HTTP/1.1 connection reading server-sent events (comments skipped)."""

    def __init__(self, reader, writer, status):
        self.reader, self.writer, self.status = reader, writer, status

    @classmethod
    async def open(cls, base, path, headers=None):
        host, port = base.rsplit("/", 1)[-1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer, int(head.split()[1]))

    async def next_event(self) -> dict:
        while True:
            block = await self._block()
            data = [line[5:].strip() for line in block.split("\n") if line.startswith("data:")]
            if data:
                return json.loads("\n".join(data))

    async def _block(self) -> str:
        # chunked transfer encoding: size line, data, CRLF
        text = getattr(self, "_pending", "")
        while "\n\n" not in text:
            size = int((await self.reader.readline()).strip(), 16)
            text += (await self.reader.readexactly(size + 2))[:-2].decode()
        block, _, self._pending = text.partition("\n\n")
        return block

    def close(self):
        self.writer.close()


def gateway_test(func):
    """Run ``func(gateway, builder, api)`` against a fresh gateway with its admin API."""
    def wrapper(tmp_path):
        async def main():
            gateway, builder, server, url = await start_gateway(str(tmp_path), token=TOKEN)
            api = Api(url)
            try:
                await func(gateway, builder, api)
            finally:
                api.http.close()
                await stop_gateway(gateway, server)
        run(main())
    wrapper.__name__ = func.__name__
    return wrapper


def every_route():
    for route in ROUTES:
        path = route.path.replace("{name}", "x")
        for method in route.methods:
            yield method, path


@pytest.mark.parametrize("token", [None, "wrong-token", "", "secret-token-but-longer"])
def test_every_route_rejects_a_missing_or_wrong_token(tmp_path, token):
    @gateway_test
    async def check(gateway, builder, api):
        routes = list(every_route()) + [("GET", "/api/nonexistent"), ("GET", "/")]
        assert len(routes) > 25
        for method, path in routes:
            code, body, response = await api.call(method, path, {"x": 1} if method in (
                "PUT", "POST", "PATCH") else None, token=token)
            assert code == 401, (method, path, code)
            assert body["error_type"] == "unauthorized" and body["request_id"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            if path == "/api/events":  # the query token is checked too
                code, _, _ = await api.call(method, f"{path}?token={token or ''}", token=None)
                assert code == 401
        assert builder.builds == []
    check(tmp_path)


def test_the_query_token_is_accepted_only_by_the_event_stream(tmp_path):
    @gateway_test
    async def check(gateway, builder, api):
        code, _, _ = await api.call("GET", f"/api/health?token={TOKEN}", token=None)
        assert code == 401
        stream = await SseStream.open(api.base, f"/api/events?token={TOKEN}")
        try:
            assert stream.status == 200
            assert (await stream.next_event())["type"] == "hello"
        finally:
            stream.close()
    check(tmp_path)


def test_openapi_document_covers_the_route_table():
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    for route in ROUTES:
        assert set(document["paths"][route.path]) == {m.lower() for m in route.methods}
    put = document["paths"]["/api/endpoints/{name}"]["put"]
    assert put["parameters"][0] == {"name": "name", "in": "path", "required": True,
                                    "schema": {"type": "string"}}
    assert "422" in put["responses"]


@gateway_test
async def test_deploy_read_update_and_delete(gateway, builder, api):
    body = {"method": "GET", "path": "/echo", "source": "tag: one", "workers": 2,
            "limit_open_files": 48, "origin": {"notebook": "n.ipynb", "cell_id": "c1"}}
    code, result, _ = await api.call("PUT", "/api/endpoints/echo", body)
    assert code == 201, result
    endpoint = result["endpoint"]
    assert endpoint["state"] == "running" and endpoint["live_revision"] == 1
    assert endpoint["options"]["workers"] == 2 and endpoint["url"].endswith("/echo")
    assert endpoint["options"]["limit_open_files"] == 48  # PUT takes what PATCH takes
    assert endpoint["origin"] == {"notebook": "n.ipynb", "cell_id": "c1"}
    assert result["build"]["ok"] and result["build"]["revision"] == 1
    response = await api.http.fetch(endpoint["url"])
    assert json.loads(response.body)["tag"] == "one"

    code, listing, _ = await api.call("GET", "/api/endpoints")
    assert [e["name"] for e in listing["endpoints"]] == ["echo"]
    assert "source" not in listing["endpoints"][0]
    code, source, _ = await api.call("GET", "/api/endpoints/echo/source")
    assert source["source"] == "tag: one"

    code, result, _ = await api.call("PUT", "/api/endpoints/echo/source", {"source": "tag: two"})
    assert code == 200 and result["endpoint"]["live_revision"] == 2
    code, result, _ = await api.call("PATCH", "/api/endpoints/echo", {"workers": 1})
    assert code == 200 and result["endpoint"]["options"]["workers"] == 1
    code, revisions, _ = await api.call("GET", "/api/endpoints/echo/revisions")
    assert [(r["number"], r["live"]) for r in revisions["revisions"]] == [
        (3, True), (2, False), (1, False)]
    assert builder.builds[-1].source == "tag: two"

    code, logs, _ = await api.call("GET", "/api/endpoints/echo/logs?tail=2")
    assert code == 200 and len(logs["lines"]) == 2 and "text" in logs["lines"][0]
    code, metrics, _ = await api.call("GET", "/api/endpoints/echo/metrics")
    assert code == 200 and isinstance(metrics["metrics"], dict)
    code, stats, _ = await api.call("GET", "/api/stats")
    assert stats["endpoints"] == 1 and stats["states"] == {"running": 1}

    code, view, _ = await api.call("POST", "/api/endpoints/echo/stop")
    assert code == 200 and view["state"] == "stopped"
    code, view, _ = await api.call("POST", "/api/endpoints/echo/start")
    assert view["state"] == "running"
    code, view, _ = await api.call("POST", "/api/endpoints/echo/restart")
    assert view["state"] == "running"

    code, _, _ = await api.call("DELETE", "/api/endpoints/echo")
    assert code == 204
    code, body, _ = await api.call("GET", "/api/endpoints/echo")
    assert code == 404 and body["error_type"] == "not_found"


@gateway_test
async def test_build_failure_answers_422_with_rendered_diagnostics(gateway, builder, api):
    code, body, _ = await api.call("PUT", "/api/endpoints/bad", {
        "method": "GET", "path": "/bad", "source": "fn x\ncompile_error"})
    assert code == 422
    assert body["error_type"] == "build_failed" and body["request_id"]
    assert body["endpoint"]["state"] == "build_failed"
    assert body["build"]["diagnostics"][0]["line"] == 2
    assert "expected expression" in body["build"]["rendered"]
    # a failed first deploy leaves nothing listed
    assert body["endpoint"]["removed"] and "bad is not kept" in body["error"]
    assert (await api.call("GET", "/api/endpoints/bad"))[0] == 404
    code, body, _ = await api.call("GET", "/api/endpoints")
    assert "bad" not in [ep["name"] for ep in body["endpoints"]]
    # ... but a failed update keeps the endpoint and its live revision
    assert (await api.call("PUT", "/api/endpoints/good", {
        "method": "GET", "path": "/good", "source": "tag: a"}))[0] == 201
    code, body, _ = await api.call("PUT", "/api/endpoints/good", {
        "method": "GET", "path": "/good", "source": "compile_error"})
    assert code == 422 and not body["endpoint"].get("removed")
    assert (await api.call("GET", "/api/endpoints/good"))[0] == 200


@gateway_test
async def test_start_failure_answers_502_with_the_stderr_tail(gateway, builder, api):
    code, body, _ = await api.call("PUT", "/api/endpoints/dead", {
        "method": "GET", "path": "/dead", "source": "exit_at_start"})
    assert code == 502 and body["error_type"] == "deploy_failed"
    assert "failing at start" in body["endpoint"]["stderr_tail"]
    assert (await api.call("GET", "/api/endpoints/dead"))[0] == 404


@gateway_test
async def test_bad_requests_get_the_error_shape(gateway, builder, api):
    cases = [
        ("PUT", "/api/endpoints/x", {"method": "GET"}, 400, "missing_field"),
        ("PUT", "/api/endpoints/x", {"method": "GET", "path": "/x", "source": "",
                                     "colour": "red"}, 400, "invalid_field"),
        ("PUT", "/api/endpoints/x", {"method": "FETCH", "path": "/x", "source": ""},
         400, "invalid_method"),
        ("PUT", "/api/endpoints/x", {"method": "GET", "path": "x", "source": ""},
         400, "invalid_route"),
        ("PUT", "/api/endpoints/x", {"method": "GET", "path": "/x", "source": "",
                                     "timeout": -1}, 400, "invalid_option"),
        ("POST", "/api/endpoints/nope/start", None, 404, "not_found"),
        ("GET", "/api/endpoints/nope/logs", None, 404, "not_found"),
        ("GET", "/api/nothing-here", None, 404, "not_found"),
        ("DELETE", "/api/health", None, 405, "http_error"),
    ]
    for method, path, body, status, error_type in cases:
        code, payload, _ = await api.call(method, path, body)
        assert (code, payload["error_type"]) == (status, error_type), (method, path, payload)
        assert set(payload) == {"error", "error_type", "request_id"}
    response = await api.http.fetch(api.base + "/api/endpoints/x", method="PUT", body="{nope",
                                    headers={"Authorization": f"Bearer {TOKEN}"},
                                    raise_error=False)
    assert response.code == 400 and json.loads(response.body)["error_type"] == "invalid_json"
    await api.call("PUT", "/api/endpoints/a", {"method": "GET", "path": "/a/{id}", "source": ""})
    code, payload, _ = await api.call("POST", "/api/endpoints", {
        "name": "a", "method": "GET", "path": "/a/{id}", "source": ""})
    assert code == 409 and payload["error_type"] == "exists"
    code, payload, _ = await api.call("POST", "/api/endpoints", {
        "name": "lim", "method": "GET", "path": "/lim", "source": "", "limit_open_files": 0})
    assert code == 400 and "limit_open_files" in payload["error"], payload
    code, payload, _ = await api.call("PUT", "/api/endpoints/b", {
        "method": "GET", "path": "/a/{other}", "source": ""})
    assert code == 409 and payload["error_type"] == "route_conflict"


@gateway_test
async def test_wait_0_answers_202_and_the_stream_reports_progress(gateway, builder, api):
    builder.gate = asyncio.Event()
    stream = await SseStream.open(api.base, "/api/events",
                                  {"Authorization": f"Bearer {TOKEN}"})
    assert (await stream.next_event())["type"] == "hello"
    code, body, _ = await api.call("PUT", "/api/endpoints/echo?wait=0", {
        "method": "GET", "path": "/echo", "source": "tag: later"})
    assert code == 202 and body["endpoint"]["state"] == "building" and body["build"] is None
    builder.gate.set()
    events = []
    try:
        while not events or (events[-1]["type"], events[-1].get("state")) != (
                "state", "running"):
            events.append(await asyncio.wait_for(stream.next_event(), 10))
    finally:
        stream.close()
    kinds = [(e["type"], e.get("phase") or e.get("state")) for e in events
             if e["type"] in ("build", "state")]
    assert kinds[:3] == [("state", "building"), ("build", "started"), ("build", "progress")]
    assert kinds[-1] == ("state", "running")
    assert all(e["endpoint"] == "echo" for e in events if e["type"] != "hello")


@gateway_test
async def test_services_are_stored_and_masked(gateway, builder, api):
    config = {"dsn": "postgres://app:hunter2@127.0.0.1:9/app", "password": "hunter2"}
    code, body, _ = await api.call("POST", "/api/services", {
        "name": "db", "kind": "postgres", "config": config})
    assert code == 201 and "hunter2" not in json.dumps(body)
    code, listing, _ = await api.call("GET", "/api/services")
    assert "hunter2" not in json.dumps(listing) and listing["services"][0]["kind"] == "postgres"
    code, body, _ = await api.call("PUT", "/api/endpoints/e", {
        "method": "GET", "path": "/e", "source": "", "services": ["db"]})
    assert code == 201 and body["endpoint"]["services"] == ["db"]
    code, body, _ = await api.call("GET", "/api/services/db")
    assert body["endpoints"] == ["e"] and body["config"]["password"] == "****"
    code, body, _ = await api.call("DELETE", "/api/services/db")
    assert code == 409 and body["error_type"] == "conflict"
    code, body, _ = await api.call("POST", "/api/services/db/test")
    assert code == 200 and "ok" in body
    code, body, _ = await api.call("PUT", "/api/endpoints/f", {
        "method": "GET", "path": "/f", "source": "", "services": ["nope"]})
    assert code == 400 and body["error_type"] == "unknown_service"


@gateway_test
async def test_service_config_is_checked_and_builtins_are_listed(gateway, builder, api):
    code, body, _ = await api.call("POST", "/api/services", {
        "name": "db", "kind": "postgres", "config": {"url": "postgres://x"}})
    assert code == 400 and body["error_type"] == "invalid_config" and "dsn" in body["error"]
    code, body, _ = await api.call("POST", "/api/services", {
        "name": "db", "kind": "teleport", "config": {}})
    assert code == 400 and "unknown service kind" in body["error"]
    code, listing, _ = await api.call("GET", "/api/services")
    builtins = {s["name"]: s["kind"] for s in listing["services"] if s.get("builtin")}
    assert builtins.get("default") == "sqlite"
    code, body, _ = await api.call("PUT", "/api/endpoints/g", {
        "method": "GET", "path": "/g", "source": "", "services": ["default"]})
    assert code == 201, body
    # A built-in name cannot be taken over: "g" relies on "default" without a binding.
    for name in ("default", "files"):
        code, body, _ = await api.call("POST", "/api/services", {
            "name": name, "kind": "sqlite", "config": {}})
        assert code == 409 and body["error_type"] == "builtin_service", body
    code, listing, _ = await api.call("GET", "/api/services")
    assert {s["name"]: s.get("builtin") for s in listing["services"]}["default"] is True
    code, body, _ = await api.call("GET", "/api/endpoints/g")
    assert body["services"] == [] and code == 200


@gateway_test
async def test_domains_lists_endpoint_domains(gateway, builder, api):
    await api.call("PUT", "/api/endpoints/a", {"method": "GET", "path": "/", "source": "",
                                               "domain": "api.example.com"})
    await api.call("PUT", "/api/endpoints/b", {"method": "GET", "path": "/b", "source": ""})
    code, body, _ = await api.call("GET", "/api/domains")
    assert body == {"domains": [{"domain": "api.example.com", "endpoints": ["a"]}]}


@gateway_test
async def test_admin_client_against_the_api(gateway, builder, api):
    loop = asyncio.get_running_loop()

    def in_thread(func, *args, **kwargs):
        return loop.run_in_executor(None, lambda: func(*args, **kwargs))

    client = AdminClient(api.base, TOKEN, timeout=30)
    result = await in_thread(client.deploy, "hello", "GET", "/hello", "tag: c",
                             workers=1, origin={"cell_id": "x"})
    assert result["endpoint"]["state"] == "running"
    assert [e["name"] for e in await in_thread(client.endpoints)] == ["hello"]
    assert (await in_thread(client.health))["ok"] is True
    assert (await in_thread(client.source, "hello")) == "tag: c"
    with pytest.raises(AdminError) as info:
        await in_thread(client.deploy, "hello", "GET", "/hello", "compile_error")
    assert info.value.status == 422 and info.value.error_type == "build_failed"
    assert info.value.diagnostics[0]["line"] == 1 and info.value.rendered
    with pytest.raises(AdminError) as info:
        await in_thread(client.endpoint, "missing")
    assert info.value.status == 404 and info.value.error_type == "not_found"
    wrong = AdminClient(api.base, "nope")
    with pytest.raises(AdminError) as info:
        await in_thread(wrong.health)
    assert info.value.status == 401
    await in_thread(client.remove, "hello")
    assert await in_thread(client.endpoints) == []
    unreachable = AdminClient("http://127.0.0.1:9", TOKEN, timeout=2)
    with pytest.raises(AdminError) as info:
        await in_thread(unreachable.health)
    assert info.value.status == 0 and info.value.error_type == "unreachable"


@gateway_test
async def test_admin_page_is_served_without_a_token_and_its_proxy_needs_one(gateway, builder, api):
    from tornado.httpclient import AsyncHTTPClient
    http = AsyncHTTPClient()
    page = await http.fetch(api.base + "/admin/", raise_error=False)
    assert page.code == 200 and b"<html" in page.body.lower()
    assert api.token.encode() not in page.body
    code, body, _ = await api.call("PUT", "/api/endpoints/e", {
        "method": "GET", "path": "/e", "source": ""})
    assert code == 201, body
    refused = await http.fetch(api.base + "/admin/proxy/e", raise_error=False)
    assert refused.code == 401 and json.loads(refused.body)["error_type"] == "unauthorized"
    wrong = await http.fetch(api.base + "/admin/proxy/e", raise_error=False,
                             headers={"X-Edgebook-Admin-Token": "nope"})
    assert wrong.code == 401
    forwarded = await http.fetch(api.base + "/admin/proxy/e?x=1", raise_error=False,
                                 headers={"X-Edgebook-Admin-Token": api.token})
    assert forwarded.code == 200, forwarded.body
    assert json.loads(forwarded.body)["query"] == {"x": "1"}
    # the raw path goes through: %2F and %3F stay inside their segment
    code, body, _ = await api.call("PUT", "/api/endpoints/p", {
        "method": "GET", "path": "/p/{x}", "source": ""})
    assert code == 201, body
    forwarded = await http.fetch(api.base + "/admin/proxy/p/a%2Fb%3Fc", raise_error=False,
                                 headers={"X-Edgebook-Admin-Token": api.token})
    assert forwarded.code == 200, forwarded.body
    echo = json.loads(forwarded.body)
    assert (echo["path"], echo["params"], echo["query"]) == ("/p/a%2Fb%3Fc", {"x": "a%2Fb%3Fc"}, {})


@gateway_test
async def test_a_foreign_host_name_is_refused_even_with_the_token(gateway, builder, api):
    code, body, _ = await api.call("GET", "/api/health", headers={"Host": "rebound.example"})
    assert code == 403 and body["error_type"] == "host_not_allowed"
    for host in ("127.0.0.1", "localhost:1234", "[::1]:80"):
        code, _, _ = await api.call("GET", "/api/health", headers={"Host": host})
        assert code == 200, host


@gateway_test
async def test_endpoint_names_cannot_reach_outside_the_data_dir(gateway, builder, api):
    for name in ("..%2F..%2Fetc", "%2E%2E", ".hidden", "a%00b", "x" * 65):
        code, body, _ = await api.call("PUT", f"/api/endpoints/{name}", {
            "method": "GET", "path": "/n", "source": ""})
        assert code in (400, 404), (name, code, body)
    code, body, _ = await api.call("PUT", "/api/endpoints/ok", {
        "method": "GET", "path": "/../etc/passwd", "source": ""})
    assert code == 400 and body["error_type"] == "invalid_route", body
    code, body, _ = await api.call("PUT", "/api/endpoints/ok", {
        "method": "GET", "path": "/a b", "source": ""})
    assert code == 400 and body["error_type"] == "invalid_route", body


@gateway_test
async def test_a_cell_without_a_name_updates_the_endpoint_on_its_route(gateway, builder, api):
    """The CLI names an endpoint after its file, a cell after its route: whichever comes
    second updates the first's endpoint instead of colliding with it."""
    from edgebook.notebook.cells import CellSpec, _place
    loop = asyncio.get_running_loop()
    client = AdminClient(api.base, TOKEN, timeout=30)

    def in_thread(func, *args, **kwargs):
        return loop.run_in_executor(None, lambda: func(*args, **kwargs))

    await in_thread(client.deploy, "hello", "GET", "/hello", "tag: cli")
    assert await in_thread(client.placement, None, "GET", "/hello") == ("hello", None)
    spec = CellSpec("GET", "/hello", "tag: cell")
    notes = await in_thread(_place, client, spec)
    assert spec.name == "hello"
    assert notes == ["GET /hello is endpoint hello's route: updating hello"]
    named = CellSpec("GET", "/elsewhere", "tag: cell", name="hello")
    assert await in_thread(_place, client, named) == [
        "endpoint hello moves from GET /hello to GET /elsewhere"]
    assert named.name == "hello"


@gateway_test
async def test_if_match_refuses_a_conflicting_update_with_409(gateway, builder, api):
    body = {"method": "GET", "path": "/etag", "source": "tag: one"}
    code, _, _ = await api.call("PUT", "/api/endpoints/etag", body, headers={"If-Match": '"0"'})
    assert code == 201
    code, _, response = await api.call("GET", "/api/endpoints/etag")
    etag = response.headers["ETag"]
    assert etag.strip('"').isdigit()
    # Two clients read the same version; the first write wins, the second gets 409.
    code, _, _ = await api.call("PATCH", "/api/endpoints/etag", {"source": "tag: two"},
                                headers={"If-Match": etag})
    assert code == 200
    code, body, _ = await api.call("PATCH", "/api/endpoints/etag", {"source": "tag: three"},
                                   headers={"If-Match": etag})
    assert code == 409 and body["error_type"] == "conflict"
    assert "changed it since you read it" in body["error"]
    code, source, _ = await api.call("GET", "/api/endpoints/etag/source")
    assert source["source"] == "tag: two"
    # "0" means create only; a malformed tag is a 400.
    code, body, _ = await api.call("PUT", "/api/endpoints/etag", {
        "method": "GET", "path": "/etag", "source": "tag: four"}, headers={"If-Match": '"0"'})
    assert code == 409
    code, body, _ = await api.call("PATCH", "/api/endpoints/etag", {"workers": 2},
                                   headers={"If-Match": "yesterday"})
    assert code == 400 and body["error_type"] == "invalid_header"


@gateway_test
async def test_the_live_revision_source_is_served_not_a_failed_edit(gateway, builder, api):
    assert (await api.call("PUT", "/api/endpoints/keep", {
        "method": "GET", "path": "/keep", "source": "tag: good"}))[0] == 201
    code, body, _ = await api.call("PUT", "/api/endpoints/keep/source",
                                   {"source": "compile_error"})
    assert code == 422
    code, source, _ = await api.call("GET", "/api/endpoints/keep/source")
    assert source["source"] == "tag: good" and source["revision"] == 1
    assert source["submitted"]["source"] == "compile_error"
    document = gateway.openapi_document()
    assert document["paths"]  # the export reads the live source too
    # A restart whose binary is gone rebuilds what served, not the failed edit.
    revision = gateway.registry.get_revision("keep", 1)
    os.remove(revision.binary)
    code, view, _ = await api.call("POST", "/api/endpoints/keep/restart")
    assert code == 200 and view["state"] == "running", view
    assert builder.builds[-1].source == "tag: good"


@gateway_test
async def test_health_and_readiness_probes_answer_without_a_token(gateway, builder, api):
    for probe in ("/healthz", "/readyz"):
        code, body, response = await api.call("GET", probe, token=None)
        assert code == 200 and body["ok"] is True, (probe, body)
        assert response.headers["Cache-Control"] == "no-store"
    gateway._stopping = True  # what SIGTERM sets first: not ready, still alive
    try:
        code, body, _ = await api.call("GET", "/readyz", token=None)
        assert code == 503 and body == {"ok": False, "reason": "shutting down"}
        assert (await api.call("GET", "/healthz", token=None))[0] == 200
    finally:
        gateway._stopping = False


@gateway_test
async def test_cancelling_when_nothing_builds_says_so(gateway, builder, api):
    assert (await api.call("PUT", "/api/endpoints/idle", {
        "method": "GET", "path": "/idle", "source": "tag: a"}))[0] == 201
    code, body, _ = await api.call("POST", "/api/endpoints/idle/build/cancel")
    assert code == 200 and body == {"name": "idle", "cancelled": False}
    code, body, _ = await api.call("POST", "/api/endpoints/nope/build/cancel")
    assert code == 404


@gateway_test
async def test_a_cancelled_rebuild_leaves_the_live_revision_serving(gateway, builder, api):
    code, body, _ = await api.call("PUT", "/api/endpoints/keep", {
        "method": "GET", "path": "/keep", "source": "tag: one"})
    assert code == 201 and body["endpoint"]["state"] == "running"
    builder.gate = asyncio.Event()  # the next build is held until cancelled
    code, body, _ = await api.call("PUT", "/api/endpoints/keep?wait=0", {
        "method": "GET", "path": "/keep", "source": "tag: two"})
    assert code == 202 and body["endpoint"]["state"] == "building"
    assert "revision 1 keeps serving" in body["endpoint"]["reason"]
    for _ in range(250):
        code, cancel, _ = await api.call("POST", "/api/endpoints/keep/build/cancel")
        if cancel["cancelled"]:
            break
        await asyncio.sleep(0.02)  # the build is not held yet
    assert cancel == {"name": "keep", "cancelled": True}
    for _ in range(250):
        code, body, _ = await api.call("GET", "/api/endpoints/keep")
        if body["state"] != "building":
            break
        await asyncio.sleep(0.02)
    assert (body["state"], body["reason"]) == ("running",
                                               "build cancelled; revision 1 keeps serving")
    assert body["live_revision"] == 1
    response = await AsyncHTTPClient().fetch(gateway.url + "/keep")
    assert json.loads(response.body)["tag"] == "one"
