"""The OpenAPI document of the running endpoints, served by a real gateway (fake builds).

The fake build service ignores everything in a source but its directives, so a source can
carry an ``//! ```openapi`` block and Rust structs for the exporter to read while the
built worker is the Python fake worker (``/mode/status?code=N&body=..`` answers N).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse

from openapi_spec_validator import validate
from tornado.httpclient import AsyncHTTPClient

from edgebook.errors import GatewayError
from edgebook.gateway.spec import EndpointSpec
from edgebook.openapi.export import EndpointInfo, build_document
from edgebook.openapi.samples import SampleStore

from control_plane_helpers import start_gateway, stop_gateway

TOKEN = "secret-token"

SOURCE = '''//! ```openapi
//! summary: Look at one item
//! tags: [items]
//! responses:
//!   "200": {description: The item, schema: Item}
//!   "404": {description: No such item}
//! ```
tag: items
#[derive(Serialize, Deserialize)]
struct Item { id: i64, name: String, note: Option<String> }
fn handle(req: Request) -> Response {
    let code: u16 = req.require_query_param("code")?;
    let verbose = req.query_param_as::<bool>("verbose");
}
'''

POST_SOURCE = '''tag: create
#[derive(Deserialize)]
struct NewItem { name: String, count: Option<u32> }
fn handle(req: Request) -> Result<Response, HandlerError> {
    let item: NewItem = req.json()?;
}
'''


def run(coro):
    return asyncio.run(coro)


async def fetch(url, **kwargs):
    client = AsyncHTTPClient(force_instance=True)
    try:
        return await client.fetch(url, raise_error=False, **kwargs)
    finally:
        client.close()


def status_url(base, code, body=None, **extra):
    query = {"code": str(code), **extra}
    if body is not None:
        query["body"] = json.dumps(body)
    return f"{base}/mode/status?{urllib.parse.urlencode(query)}"


def spec(name, source, method="GET", path="/mode/{mode}", **options):
    return EndpointSpec(name=name, method=method, path=path, source=source, options=options)


async def document(base):
    response = await fetch(base + "/openapi.json")
    assert response.code == 200, response.body
    assert response.headers["Content-Type"] == "application/json"
    return json.loads(response.body)


async def examples_document(admin):
    """The document with recorded examples: only the authenticated admin API has it."""
    response = await fetch(admin + "/api/openapi/endpoints.json",
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.code == 200, response.body
    return json.loads(response.body)


def test_document_shows_real_statuses_and_examples(tmp_path):
    async def main():
        gateway, _, server, admin = await start_gateway(str(tmp_path), token=TOKEN)
        try:
            await gateway.put_endpoint(spec("items", SOURCE))
            await gateway.put_endpoint(spec("create", POST_SOURCE, method="POST"))
            empty = await document(gateway.url)
            validate(empty)
            op = empty["paths"]["/mode/{mode}"]["get"]
            assert set(op["responses"]) == {"200", "404"}  # declared, none seen yet
            assert "examples" not in json.dumps(op["responses"])

            for code, body in ((200, {"id": 1, "name": "one"}), (200, {"id": 2, "name": "two"}),
                               (404, {"error": "Not found"}), (418, "teapot")):
                response = await fetch(status_url(gateway.url, code, body))
                assert response.code == code
            response = await fetch(gateway.url + "/mode/status?code=201", method="POST",
                                   body=json.dumps({"name": "box", "count": 2}),
                                   headers={"Content-Type": "application/json",
                                            "Authorization": "Bearer do-not-copy"})
            assert response.code == 201

            doc = await examples_document(admin)
            validate(doc)
            assert doc["openapi"] == "3.1.0"
            assert doc["servers"] == [{"url": gateway.url}]
            op = doc["paths"]["/mode/{mode}"]["get"]
            assert op["operationId"] == "items" and op["summary"] == "Look at one item"
            assert op["tags"] == ["items"] and op["x-edgebook-revision"] == "1"
            params = {(p["in"], p["name"]): p for p in op["parameters"]}
            assert params[("path", "mode")] == {"name": "mode", "in": "path",
                                                "schema": {"type": "string"},
                                                "required": True, "example": "status"}
            assert params[("query", "code")]["required"] is True
            assert params[("query", "code")]["schema"]["type"] == "integer"
            assert params[("query", "verbose")]["schema"] == {"type": "boolean"}
            responses = op["responses"]
            assert set(responses) == {"200", "404", "418"}  # as seen, not all 200
            ok = responses["200"]["content"]
            assert ok["application/json"] == {
                "schema": {"$ref": "#/components/schemas/Item"}}
            # The fake worker sends no Content-Type; the document does not invent one.
            assert [e["value"] for e in ok["*/*"]["examples"].values()] == [
                {"id": 1, "name": "one"}, {"id": 2, "name": "two"}]
            missing = responses["404"]
            assert missing["description"] == "No such item"
            assert list(missing["content"]["*/*"]["examples"].values())[0][
                "value"] == {"error": "Not found"}
            assert responses["418"]["description"] == "I'm a Teapot"
            item = doc["components"]["schemas"]["Item"]
            assert item["required"] == ["id", "name"]
            assert item["properties"]["note"] == {"type": ["string", "null"]}

            create = doc["paths"]["/mode/{mode}"]["post"]
            body = create["requestBody"]["content"]["application/json"]
            assert body["schema"] == {"$ref": "#/components/schemas/NewItem"}
            assert [e["value"] for e in body["examples"].values()] == [
                {"name": "box", "count": 2}]
            assert "do-not-copy" not in json.dumps(doc)  # request headers never copied
            assert doc["components"]["schemas"]["NewItem"]["required"] == ["name"]

            # The unauthenticated data plane publishes the schemas, none of the traffic.
            public = await document(gateway.url)
            validate(public)
            assert public["servers"] == [{"url": gateway.url}]
            assert set(public["paths"]["/mode/{mode}"]) == {"get", "post"}
            text = json.dumps(public)
            assert "examples" not in text and '"example"' not in text
            for recorded in ('"one"', '"two"', "Not found", "teapot", '"box"', '"status"'):
                assert recorded not in text, recorded
            assert public["components"]["schemas"]["Item"] == item
            # Its own admin description sits next to it, distinct.
            headers = {"Authorization": f"Bearer {TOKEN}"}
            response = await fetch(admin + "/api/openapi.json", headers=headers)
            assert json.loads(response.body)["info"]["title"] == "edgebook admin API"
            assert (await fetch(admin + "/api/openapi/endpoints.json")).code == 401
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_a_new_revision_starts_with_no_examples_and_removal_forgets(tmp_path):
    async def main():
        gateway, _, server, admin = await start_gateway(str(tmp_path), token=TOKEN)
        try:
            await gateway.put_endpoint(spec("items", SOURCE))
            assert (await fetch(status_url(gateway.url, 501, {"stub": True}))).code == 501
            doc = await examples_document(admin)
            assert "501" in doc["paths"]["/mode/{mode}"]["get"]["responses"]
            await gateway.put_endpoint(spec("items", SOURCE.replace("tag: items", "tag: v2")))
            doc = await examples_document(admin)
            op = doc["paths"]["/mode/{mode}"]["get"]
            assert op["x-edgebook-revision"] == "2"
            assert "501" not in op["responses"]  # the stub's answers are gone
            assert (await fetch(status_url(gateway.url, 200, {"id": 1, "name": "x"}))).code \
                == 200
            doc = await examples_document(admin)
            assert set(doc["paths"]["/mode/{mode}"]["get"]["responses"]) == {"200", "404"}
            await gateway.remove_endpoint("items")
            assert gateway.samples.examples("items") == {}
            assert (await examples_document(admin))["paths"] == {}
            assert (await document(gateway.url))["paths"] == {}
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_the_public_document_is_built_once_per_registry_change(tmp_path, monkeypatch):
    import edgebook.gateway.core as core
    built = []
    real = core.gateway_document
    monkeypatch.setattr(core, "gateway_document",
                        lambda *a, **kw: built.append(kw) or real(*a, **kw))

    async def main():
        gateway, _, server, _ = await start_gateway(str(tmp_path))
        try:
            await gateway.put_endpoint(spec("items", SOURCE))
            for _ in range(3):
                doc = await document(gateway.url)
                assert (await fetch(status_url(gateway.url, 200, {"id": 1}))).code == 200
            assert doc["paths"]["/mode/{mode}"]["get"]["x-edgebook-revision"] == "1"
            assert built == [{"examples": False}]
            await gateway.put_endpoint(spec("items", SOURCE.replace("tag: items", "tag: v2")))
            doc = await document(gateway.url)
            assert doc["paths"]["/mode/{mode}"]["get"]["x-edgebook-revision"] == "2"
            assert len(built) == 2
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_a_user_route_at_the_document_path_wins(tmp_path):
    async def main():
        gateway, _, server, _ = await start_gateway(str(tmp_path))
        try:
            await gateway.put_endpoint(spec("mine", "tag: mine", method="POST",
                                            path="/openapi.json"))
            # POST is routed, GET is not: GET still gets the document.
            doc = await document(gateway.url)
            assert "/openapi.json" in doc["paths"]
            head = await fetch(gateway.url + "/openapi.json", method="HEAD")
            assert head.code == 200 and head.body == b""
            await gateway.put_endpoint(spec("mine_get", "tag: mine", path="/openapi.json"))
            response = await fetch(gateway.url + "/openapi.json")
            assert response.code == 200 and json.loads(response.body)["tag"] == "mine"
            assert (await fetch(gateway.url + "/nothing-here")).code == 404
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_the_document_path_is_configurable_and_can_be_off(tmp_path):
    async def main():
        gateway, _, server, _ = await start_gateway(str(tmp_path / "a"),
                                                    openapi_path="/_api/spec.json")
        try:
            assert (await fetch(gateway.url + "/openapi.json")).code == 404
            response = await fetch(gateway.url + "/_api/spec.json")
            assert response.code == 200
            validate(json.loads(response.body))
        finally:
            await stop_gateway(gateway, server)
        gateway, _, server, _ = await start_gateway(str(tmp_path / "b"), openapi_path=None)
        try:
            assert (await fetch(gateway.url + "/openapi.json")).code == 404
        finally:
            await stop_gateway(gateway, server)
    run(main())


def test_gateway_errors_are_documented_as_such(tmp_path):
    async def main():
        gateway, _, server, admin = await start_gateway(str(tmp_path), token=TOKEN)
        try:
            await gateway.put_endpoint(spec("slow", "tag: slow", timeout=0.3))
            response = await fetch(gateway.url + "/mode/slow?s=2")
            assert response.code == 504
            doc = await examples_document(admin)
            validate(doc)
            timeout = doc["paths"]["/mode/{mode}"]["get"]["responses"]["504"]
            assert "answered by the gateway" in timeout["description"]
            example = list(timeout["content"]["application/json"]["examples"].values())[0]
            assert example["value"]["error_type"] == "timeout"
        finally:
            await stop_gateway(gateway, server)
    run(main())


# -- the store itself ------------------------------------------------------------------------

def frame(body=None, **fields):
    return {"type": "request", "request_id": "r", "method": "GET", "path": "/x",
            "params": {}, "query": {}, "headers": {}, "body": body, **fields}


def response(status, body=None, content_type="application/json"):
    return {"status": status, "headers": {"Content-Type": content_type}, "body": body}


def test_store_bounds():
    store = SampleStore(per_status=2, max_statuses=3, max_body=10)
    for index in range(5):
        store.record("ep", "1", frame(), response(200, json.dumps(index)))
    assert [s.response_body for s in store.examples("ep")[200]] == [3, 4]  # the last two
    for status in (201, 202, 203):
        store.record("ep", "1", frame(), response(status, "1"))
    assert sorted(store.examples("ep")) == [200, 201, 202]  # three statuses at most
    store.record("ep", "1", frame(body="x" * 20), response(400, "1"))  # a new status,
    assert 400 not in store.examples("ep")                                # but full
    store.record("ep", "1", frame(body="x" * 20), response(201, "1"))
    assert len(store.examples("ep")[201]) == 1 and store.counts("ep")[201] == 2  # too big
    store.record("ep", "2", frame(), response(500, None))
    assert list(store.examples("ep")) == [500] and store.revision("ep") == "2"
    store.record("ep", "2", frame(), GatewayError(504, "timeout", "too slow"))
    assert store.examples("ep")[504][0].gateway_error == "timeout"
    store.forget("ep")
    assert store.examples("ep") == {} and store.revision("ep") is None


def test_store_decodes_bodies_lazily():
    store = SampleStore()
    store.record("ep", "1", frame(body="aGk=", body_encoding="base64",
                                  headers={"content-type": "text/plain"}),
                 response(200, "not json", "text/plain; charset=utf-8"))
    store.record("ep", "1", frame(body="/w==", body_encoding="base64"),
                 response(201, "/w==", "application/octet-stream") | {"body_encoding": "base64"})
    (text,), (binary,) = store.examples("ep")[200], store.examples("ep")[201]
    assert text.request_body == "hi" and text.response_body == "not json"
    assert binary.request_body is None and binary.response_body is None


def test_colliding_struct_names_get_distinct_components():
    a = EndpointInfo("a", "POST", "/a", "#[derive(Deserialize)]\nstruct Body { x: i64 }\n"
                                        "fn handle(req: Request) { let b: Body = req.json()?; }")
    b = EndpointInfo("b", "POST", "/b", "#[derive(Deserialize)]\nstruct Body { y: bool }\n"
                                        "fn handle(req: Request) { let b = req.json::<Body>(); }")
    doc = build_document([a, b])
    validate(doc)
    assert set(doc["components"]["schemas"]) == {"Body", "Body_b"}
    assert doc["paths"]["/b"]["post"]["requestBody"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/Body_b"}


def test_declared_and_read_parameters_are_one_parameter():
    source = ('//! ```openapi\n//! parameters:\n'
              '//! - {name: limit, in: query, description: At most this many}\n'
              '//! - {name: id, in: path, schema: {type: string, format: uuid}}\n//! ```\n'
              'fn handle(req: Request) -> Response {\n'
              '    let limit: Option<u32> = req.query_param_as("limit");\n'
              '    let id = req.require_path_param::<String>("id");\n}\n')
    doc = build_document([EndpointInfo("get_item", "GET", "/items/{id}", source)])
    validate(doc)
    params = doc["paths"]["/items/{id}"]["get"]["parameters"]
    assert params == [
        {"name": "id", "in": "path", "schema": {"type": "string", "format": "uuid"},
         "required": True},
        {"name": "limit", "in": "query", "description": "At most this many",
         "schema": {"type": "integer", "format": "int64", "minimum": 0}}]


def test_shorthand_types_unknown_to_the_handler_are_reported():
    source = ('//! ```openapi\n//! requestBody: Vec<String>\n'
              '//! responses: {"200": Missing, "201": {schema: "Option<i64>"}}\n//! ```\n')
    doc = build_document([EndpointInfo("p", "POST", "/p", source)])
    validate(doc)
    op = doc["paths"]["/p"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "type": "array", "items": {"type": "string"}}
    assert op["responses"]["201"]["content"]["application/json"]["schema"] == {
        "type": ["integer", "null"], "format": "int64"}
    assert op["x-edgebook-problems"] == [
        "response 200 names 'Missing': no struct or enum of that name in this handler, "
        "and not a type edgebook knows"]


def test_any_endpoints_and_bad_blocks():
    doc = build_document([
        EndpointInfo("all", "ANY", "/x", "//! ```openapi\n//! summary: [oops\n//! ```\n"),
        EndpointInfo("get_x", "GET", "/x", ""),
    ])
    validate(doc)
    item = doc["paths"]["/x"]
    assert item["get"]["operationId"] == "get_x"
    assert [item[m]["operationId"] for m in ("post", "put", "patch", "delete")] == [
        "all_post", "all_put", "all_patch", "all_delete"]
    assert "not valid YAML" in item["post"]["x-edgebook-problems"][0]
    assert item["post"]["responses"] == {
        "default": {"description": "No response declared or observed yet"}}


def test_schemathesis_reports_a_server_error(tmp_path):
    """The control for the pet store's schemathesis run: the same check fails on a 5xx."""
    import sys

    async def main():
        gateway, _, server, _ = await start_gateway(str(tmp_path))
        try:
            await gateway.put_endpoint(spec("crash", "tag: crash", path="/mode/crash"))
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "schemathesis.cli", "run", gateway.url + "/openapi.json",
                "--checks", "not_a_server_error", "--phases", "examples,fuzzing",
                "--max-examples", "2", "--workers", "1", "--request-timeout", "10",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            output, _ = await asyncio.wait_for(process.communicate(), 300)
            return process.returncode, output.decode()
        finally:
            await stop_gateway(gateway, server)
    code, output = run(main())
    assert code != 0 and "Server error" in output, output[-3000:]
