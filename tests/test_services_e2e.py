"""Services end to end: real Rust handlers calling SQLite and Redis through a real gateway."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request

import pytest

from servers import redis_server  # noqa: F401  (fixture)
from test_cli import Server

from edgebook.client import AdminClient

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is needed")

PETSTORE = r'''
use rust_edge_gateway_sdk::prelude::*;

fn db() -> DbPool {
    DbPool { pool_id: "default".to_string() }
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    db().execute("CREATE TABLE IF NOT EXISTS pets (id INTEGER PRIMARY KEY, name TEXT, status TEXT)", &[])?;
    match req.method.as_str() {
        "POST" => {
            #[derive(Deserialize)]
            struct NewPet { name: String, status: String }
            let pet: NewPet = req.json()?;
            db().execute("INSERT INTO pets (name, status) VALUES (?, ?)", &[&pet.name, &pet.status])?;
            Ok(Response::created(json!({"name": pet.name})))
        }
        _ => {
            let status = req.query_param("status").cloned().unwrap_or_else(|| "available".into());
            let rows = db().query("SELECT name FROM pets WHERE status = ? ORDER BY id", &[&status])?;
            Ok(Response::ok(json!({"pets": rows.rows})))
        }
    }
}
'''

CACHE = r'''
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Result<Response, HandlerError> {
    let cache = RedisPool { pool_id: "cache".to_string() };
    let key = req.require_path_param::<String>("key")?;
    let hits = cache.incr(&format!("hits:{}", key))?;
    cache.set(&key, "cached")?;
    Ok(Response::ok(json!({"hits": hits, "value": cache.get(&key)?})))
}
'''


def fetch(url, data=None, method=None):
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("services-e2e") / ".edgebook")
    yield server, AdminClient(server.info.admin_url, server.info.token)
    server.terminate()


def test_pet_store_on_the_embedded_sqlite_database(gateway):
    server, client = gateway
    client.deploy("pets", "GET", "/pets", PETSTORE)
    client.deploy("pets_post", "POST", "/pets", PETSTORE)
    base = server.info.url
    for name, status in [("Rex", "available"), ("Tom", "sold"), ("Bob'; DROP TABLE pets;--", "sold")]:
        code, body = fetch(f"{base}/pets", json.dumps({"name": name, "status": status}).encode())
        assert code == 201, body
    assert fetch(f"{base}/pets?status=sold") == (
        200, {"pets": [{"name": "Tom"}, {"name": "Bob'; DROP TABLE pets;--"}]})
    assert fetch(f"{base}/pets") == (200, {"pets": [{"name": "Rex"}]})
    code, body = fetch(f"{base}/pets", b'{"name": 1}')
    assert code == 400 and body["error"].startswith("Bad request: Invalid JSON")


def test_redis_cache_needs_a_binding_then_works(gateway, redis_server):  # noqa: F811
    server, client = gateway
    client.put_service("cache", "redis", redis_server.config())
    client.deploy("unbound", "GET", "/unbound/{key}", CACHE)
    code, body = fetch(f"{server.info.url}/unbound/a")
    # A 5xx's details go to the endpoint's log, not to the client (EDGEBOOK_EXPOSE_ERRORS unset).
    assert (code, body["error"]) == (500, "Internal Server Error")
    deadline = time.monotonic() + 10
    while not any("not bound" in entry["text"] for entry in client.logs("unbound")):
        assert time.monotonic() < deadline, client.logs("unbound")
        time.sleep(0.05)
    client.deploy("cached", "GET", "/cached/{key}", CACHE, services=["cache"])
    assert fetch(f"{server.info.url}/cached/a") == (200, {"hits": 1, "value": "cached"})
    assert fetch(f"{server.info.url}/cached/a") == (200, {"hits": 2, "value": "cached"})


def test_server_timing_shows_the_phases_and_the_handlers_database_calls(gateway):
    from edgebook.servertiming import parse_server_timing
    server, client = gateway
    client.deploy("pets", "GET", "/pets", PETSTORE)
    # two pets of a status no other test uses, added through a route of their own
    client.deploy("pets_timing_add", "POST", "/pets-timing", PETSTORE)
    for name in ("Rex", "Tom"):
        pet = json.dumps({"name": name, "status": "timed"}).encode()
        added = urllib.request.Request(f"{server.info.url}/pets-timing", method="POST",
                                       data=pet, headers={"Content-Type": "application/json"})
        urllib.request.urlopen(added, timeout=30).close()
    url = f"{server.info.url}/pets?status=timed"
    with urllib.request.urlopen(url, timeout=30) as response:  # `serve` without --dev
        assert response.headers.get("Server-Timing") is None
    wrong = urllib.request.Request(url, headers={"X-Edgebook-Timing": "not-the-token"})
    with urllib.request.urlopen(wrong, timeout=30) as response:
        assert response.headers.get("Server-Timing") is None
    asked = urllib.request.Request(url, headers={"X-Edgebook-Timing": server.info.token})
    with urllib.request.urlopen(asked, timeout=30) as response:
        header = response.headers.get("Server-Timing")
    entries = parse_server_timing(header)
    names = [e.name for e in entries]
    assert names[:4] == ["route", "recv", "queue", "worker"] and names[-1] == "total", header
    calls = [(e.name, e.desc) for e in entries if e.name == "db"]
    assert calls == [("db", "db.execute"), ("db", "db.query")], header  # never the SQL
    query = next(e for e in entries if e.desc == "db.query")
    assert query.rows == 2, header  # what the query read: the two pets added above
    by_name = {e.name: e.duration_ms for e in entries if e.name != "db"}
    phases = sum(by_name[p] for p in ("route", "recv", "queue", "worker"))
    assert phases == pytest.approx(by_name["total"], abs=0.005)  # rounding of 3 decimals
    database = sum(e.duration_ms for e in entries if e.name == "db")
    assert 0 < database <= by_name["worker"]  # the calls happen inside the worker phase
