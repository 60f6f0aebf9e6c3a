"""SQLiteRegistry: CRUD, migrations, secret masking, and clear errors on a locked database."""

from __future__ import annotations

import sqlite3
import time

import pytest

from servers import async_test

from edgebook.gateway.registry import (MIGRATIONS, EndpointRecord, NotFoundError, RegistryError,
                               ServiceRecord, SQLiteRegistry)
from edgebook.services.secrets import mask as mask_secrets


@pytest.fixture
def registry(tmp_path):
    reg = SQLiteRegistry(str(tmp_path / "registry.sqlite3"), busy_timeout=0.2)
    yield reg
    reg.close()


def endpoint(name="hello", **fields):
    fields.setdefault("source", "fn x() {}")
    return EndpointRecord(name=name, method="GET", path=f"/{name}", **fields)


@async_test
async def test_endpoint_crud_keeps_state_and_created_across_updates(registry):
    created = await registry.put_endpoint(endpoint(deps=["rand@0.8"], options={"workers": 2},
                                             origin={"notebook": "a.ipynb", "cell": "c1"}))
    assert created.state == "created" and created.deps == ["rand@0.8"]
    assert created.origin == {"notebook": "a.ipynb", "cell": "c1"}
    await registry.set_state("hello", "running", "revision 1 serving")
    await registry.set_live_revision("hello", 1)
    time.sleep(0.01)
    updated = await registry.put_endpoint(endpoint(source="fn y() {}", options={"workers": 3}))
    assert updated.source == "fn y() {}" and updated.options == {"workers": 3}
    assert updated.state == "running" and updated.live_revision == 1
    assert updated.created == created.created and updated.updated > created.updated
    assert [e.name for e in registry.endpoints()] == ["hello"]
    await registry.delete_endpoint("hello")
    assert registry.find_endpoint("hello") is None
    with pytest.raises(NotFoundError):
        registry.get_endpoint("hello")
    with pytest.raises(NotFoundError):
        await registry.delete_endpoint("hello")


@async_test
async def test_states_and_desired_states_are_checked(registry):
    await registry.put_endpoint(endpoint())
    with pytest.raises(RegistryError):
        await registry.set_state("hello", "dancing")
    with pytest.raises(RegistryError):
        await registry.set_desired("hello", "maybe")
    record = await registry.set_state("hello", "deploy_failed", "exit 1", "panic at line 3")
    assert (record.state, record.reason, record.stderr_tail) == (
        "deploy_failed", "exit 1", "panic at line 3")
    with pytest.raises(NotFoundError):
        await registry.set_state("nope", "running")


@async_test
async def test_revisions_number_per_endpoint_and_go_with_it(registry):
    await registry.put_endpoint(endpoint("a"))
    await registry.put_endpoint(endpoint("b"))
    first = await registry.add_revision("a", content_hash="h1", binary="/bin/h1", profile="dev",
                                  build_status="ok")
    second = await registry.add_revision("a", content_hash=None, binary=None, profile="dev",
                                   build_status="failed",
                                   diagnostics=[{"level": "error", "line": 3}])
    other = await registry.add_revision("b", content_hash="h2", binary="/bin/h2", profile="release",
                                  build_status="ok")
    assert (first.number, second.number, other.number) == (1, 2, 1)
    assert [r.number for r in registry.revisions("a")] == [2, 1]
    assert registry.get_revision("a", 2).diagnostics == [{"level": "error", "line": 3}]
    with pytest.raises(NotFoundError):
        await registry.add_revision("zzz", content_hash=None, binary=None, profile="dev",
                              build_status="ok")
    await registry.delete_endpoint("a")
    assert registry.revisions("a") == []
    with pytest.raises(NotFoundError):
        registry.get_revision("a", 1)


@async_test
async def test_services_bindings_and_masking(registry):
    await registry.put_endpoint(endpoint())
    await registry.put_service(ServiceRecord(name="db", kind="postgres", config={
        "url": "postgres://app:hunter2@db.local/app", "password": "hunter2",
        "pool": {"size": 4, "api_key": "k"}, "user": "app"}))
    await registry.put_service(ServiceRecord(name="cache", kind="redis", config={}))
    await registry.set_bindings("hello", ["db", "cache", "db"])
    assert registry.bindings("hello") == ["cache", "db"]
    assert registry.bound_endpoints("db") == ["hello"]
    public = registry.get_service("db").to_public_dict()
    text = repr(public)
    assert "hunter2" not in text and "'k'" not in text
    assert public["config"]["user"] == "app" and public["config"]["pool"]["size"] == 4
    assert public["config"]["url"] == "postgres://app:****@db.local/app"
    assert registry.get_service("db").config["password"] == "hunter2"  # stored intact
    with pytest.raises(RegistryError) as info:
        await registry.delete_service("db")
    assert info.value.kind == "conflict" and "hello" in info.value.reason
    with pytest.raises(NotFoundError):
        await registry.set_bindings("hello", ["missing"])
    assert registry.bindings("hello") == ["cache", "db"]  # the failed call changed nothing
    await registry.delete_endpoint("hello")
    await registry.delete_service("db")
    assert [s.name for s in registry.services()] == ["cache"]


def test_mask_secrets_leaves_plain_values():
    assert mask_secrets({"host": "h", "port": 5432, "secret_key": "", "token": None}) == {
        "host": "h", "port": 5432, "secret_key": "", "token": None}
    assert mask_secrets({"aws_secret_access_key": "x"}) == {"aws_secret_access_key": "****"}


@async_test
async def test_generation_grows_with_every_write(registry):
    start = registry.generation()
    await registry.put_endpoint(endpoint())
    await registry.set_state("hello", "running")
    assert registry.generation() == start + 2
    with pytest.raises(RegistryError):
        await registry.set_state("hello", "bogus")
    assert registry.generation() == start + 2


def test_fresh_database_is_at_the_latest_schema_in_wal_mode(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    reg = SQLiteRegistry(path)
    assert reg.schema_version == len(MIGRATIONS)
    reg.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@async_test
async def test_migrations_run_in_order_and_keep_data(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    old = SQLiteRegistry(path)
    await old.put_endpoint(endpoint())
    old.close()
    newer = MIGRATIONS + ["ALTER TABLE endpoints ADD COLUMN note TEXT; "
                          "UPDATE endpoints SET note = 'migrated'"]
    reg = SQLiteRegistry(path, migrations=newer)
    assert reg.schema_version == len(newer)
    assert reg.get_endpoint("hello").source == "fn x() {}"
    reg.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT note FROM endpoints").fetchone()[0] == "migrated"


def test_a_database_from_a_newer_edgebook_is_refused(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RegistryError) as info:
        SQLiteRegistry(path)
    assert "newer" in info.value.reason and info.value.kind == "schema"


def test_a_failed_migration_leaves_the_old_schema(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    SQLiteRegistry(path).close()
    with pytest.raises(RegistryError):
        SQLiteRegistry(path, migrations=MIGRATIONS + ["CREATE TABLE x (a); SELECT * FROM nope"])
    reg = SQLiteRegistry(path)
    assert reg.schema_version == len(MIGRATIONS)
    reg.close()


@async_test
async def test_locked_database_raises_a_clear_error_and_loses_nothing(tmp_path, registry):
    await registry.put_endpoint(endpoint())
    other = sqlite3.connect(registry.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(RegistryError) as info:
            await registry.set_state("hello", "running")
        assert time.monotonic() - started < 5
        assert "locked" in info.value.reason and registry.path in info.value.reason
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert registry.get_endpoint("hello").state == "created"
    assert (await registry.set_state("hello", "running")).state == "running"


def test_unopenable_path_is_a_registry_error(tmp_path):
    with pytest.raises(RegistryError):
        SQLiteRegistry(str(tmp_path / "missing-dir" / "r.sqlite3"))


@async_test
async def test_every_write_moves_the_version_and_stamps_the_row(registry):
    start = registry.generation()
    first = await registry.put_endpoint(endpoint())
    assert first.version == start + 1 == registry.generation()
    running = await registry.set_state("hello", "running")
    assert running.version == start + 2
    await registry.put_service(ServiceRecord(name="db", kind="sqlite", config={}))
    assert registry.generation() == start + 3
    assert registry.get_endpoint("hello").version == start + 2


@async_test
async def test_expected_version_refuses_a_stale_write(registry):
    with pytest.raises(RegistryError) as missing:
        await registry.put_endpoint(endpoint(), expected_version=5)
    assert missing.value.kind == "conflict"
    created = await registry.put_endpoint(endpoint(), expected_version=0)
    updated = await registry.put_endpoint(endpoint(source="fn b() {}"),
                                          expected_version=created.version)
    with pytest.raises(RegistryError) as stale:
        await registry.put_endpoint(endpoint(source="fn c() {}"),
                                    expected_version=created.version)
    assert stale.value.kind == "conflict" and "changed it since" in stale.value.reason
    assert registry.get_endpoint("hello").source == "fn b() {}"
    assert registry.get_endpoint("hello").version == updated.version


@async_test
async def test_revisions_keep_their_source_and_a_queued_build_its_outcome(registry):
    await registry.put_endpoint(endpoint())
    queued = await registry.add_revision("hello", content_hash=None, binary=None,
                                         profile="dev", build_status="queued",
                                         source="fn a() {}", deps=["rand@0.8"])
    assert (queued.source, queued.deps, queued.artifact) == ("fn a() {}", ["rand@0.8"], None)
    done = await registry.update_revision("hello", queued.number, build_status="ok",
                                          binary="/bin/a", artifact="ab" * 32,
                                          content_hash="h1", diagnostics=[{"line": 1}])
    assert (done.build_status, done.binary, done.artifact) == ("ok", "/bin/a", "ab" * 32)
    assert done.diagnostics == [{"line": 1}] and done.source == "fn a() {}"
    with pytest.raises(NotFoundError):
        await registry.update_revision("hello", 99, build_status="ok")


@async_test
async def test_service_calls_read_bindings_once_until_they_change(registry, tmp_path):
    from edgebook.gateway.service_sync import ServiceBindings
    from edgebook.services import ServiceManager
    reads = []
    original = registry.bindings
    registry.bindings = lambda name: reads.append(name) or original(name)
    bindings = ServiceBindings(registry, ServiceManager(str(tmp_path)))
    await registry.put_endpoint(endpoint())
    frame = {"type": "service_call", "request_id": "r1", "call_id": 1, "service": "nope",
             "op": "get", "args": {}}
    for _ in range(3):
        reply = await bindings.call("hello", frame)
        assert reply["ok"] is False
    assert reads == ["hello"]  # one registry read for three calls
    bindings.forget("hello")
    await bindings.call("hello", frame)
    await bindings.sync()
    await bindings.call("hello", frame)
    assert reads == ["hello"] * 3
    await bindings.close()


@async_test
async def test_pruning_revisions_keeps_the_live_one_and_those_asked_for(registry):
    await registry.put_endpoint(endpoint())
    for _ in range(5):
        await registry.add_revision("hello", content_hash=None, binary=None, profile="dev",
                                    build_status="ok")
    await registry.set_live_revision("hello", 2)
    assert await registry.prune_revisions("hello", keep=[4, 5]) == [1, 3]
    assert [r.number for r in registry.revisions("hello")] == [5, 4, 2]


def test_a_registry_outage_message_names_no_password():
    from edgebook.gateway.pgregistry import unavailable

    dsn = "postgresql://edgebook:s3cr%21t@db.internal:5432/registry"
    error = unavailable(dsn, OSError(f"password s3cr!t refused for {dsn}"))
    assert "s3cr" not in str(error), str(error)
    assert "db.internal:5432/registry" in str(error)
