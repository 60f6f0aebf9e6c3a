"""SQLiteRegistry: CRUD, migrations, secret masking, and clear errors on a locked database."""

from __future__ import annotations

import sqlite3
import time

import pytest

from edgebook.registry import (MIGRATIONS, EndpointRecord, NotFoundError, RegistryError,
                               ServiceRecord, SQLiteRegistry, mask_secrets)


@pytest.fixture
def registry(tmp_path):
    reg = SQLiteRegistry(str(tmp_path / "registry.sqlite3"), busy_timeout=0.2)
    yield reg
    reg.close()


def endpoint(name="hello", **fields):
    fields.setdefault("source", "fn x() {}")
    return EndpointRecord(name=name, method="GET", path=f"/{name}", **fields)


def test_endpoint_crud_keeps_state_and_created_across_updates(registry):
    created = registry.put_endpoint(endpoint(deps=["rand@0.8"], options={"workers": 2},
                                             origin={"notebook": "a.ipynb", "cell": "c1"}))
    assert created.state == "created" and created.deps == ["rand@0.8"]
    assert created.origin == {"notebook": "a.ipynb", "cell": "c1"}
    registry.set_state("hello", "running", "revision 1 serving")
    registry.set_live_revision("hello", 1)
    time.sleep(0.01)
    updated = registry.put_endpoint(endpoint(source="fn y() {}", options={"workers": 3}))
    assert updated.source == "fn y() {}" and updated.options == {"workers": 3}
    assert updated.state == "running" and updated.live_revision == 1
    assert updated.created == created.created and updated.updated > created.updated
    assert [e.name for e in registry.endpoints()] == ["hello"]
    registry.delete_endpoint("hello")
    assert registry.find_endpoint("hello") is None
    with pytest.raises(NotFoundError):
        registry.get_endpoint("hello")
    with pytest.raises(NotFoundError):
        registry.delete_endpoint("hello")


def test_states_and_desired_states_are_checked(registry):
    registry.put_endpoint(endpoint())
    with pytest.raises(RegistryError):
        registry.set_state("hello", "dancing")
    with pytest.raises(RegistryError):
        registry.set_desired("hello", "maybe")
    record = registry.set_state("hello", "deploy_failed", "exit 1", "panic at line 3")
    assert (record.state, record.reason, record.stderr_tail) == (
        "deploy_failed", "exit 1", "panic at line 3")
    with pytest.raises(NotFoundError):
        registry.set_state("nope", "running")


def test_revisions_number_per_endpoint_and_go_with_it(registry):
    registry.put_endpoint(endpoint("a"))
    registry.put_endpoint(endpoint("b"))
    first = registry.add_revision("a", content_hash="h1", binary="/bin/h1", profile="dev",
                                  build_status="ok")
    second = registry.add_revision("a", content_hash=None, binary=None, profile="dev",
                                   build_status="failed",
                                   diagnostics=[{"level": "error", "line": 3}])
    other = registry.add_revision("b", content_hash="h2", binary="/bin/h2", profile="release",
                                  build_status="ok")
    assert (first.number, second.number, other.number) == (1, 2, 1)
    assert [r.number for r in registry.revisions("a")] == [2, 1]
    assert registry.get_revision("a", 2).diagnostics == [{"level": "error", "line": 3}]
    with pytest.raises(NotFoundError):
        registry.add_revision("zzz", content_hash=None, binary=None, profile="dev",
                              build_status="ok")
    registry.delete_endpoint("a")
    assert registry.revisions("a") == []
    with pytest.raises(NotFoundError):
        registry.get_revision("a", 1)


def test_services_bindings_and_masking(registry):
    registry.put_endpoint(endpoint())
    registry.put_service(ServiceRecord(name="db", kind="postgres", config={
        "url": "postgres://app:hunter2@db.local/app", "password": "hunter2",
        "pool": {"size": 4, "api_key": "k"}, "user": "app"}))
    registry.put_service(ServiceRecord(name="cache", kind="redis", config={}))
    registry.set_bindings("hello", ["db", "cache", "db"])
    assert registry.bindings("hello") == ["cache", "db"]
    assert registry.bound_endpoints("db") == ["hello"]
    public = registry.get_service("db").to_public_dict()
    text = repr(public)
    assert "hunter2" not in text and "'k'" not in text
    assert public["config"]["user"] == "app" and public["config"]["pool"]["size"] == 4
    assert public["config"]["url"] == "postgres://app:****@db.local/app"
    assert registry.get_service("db").config["password"] == "hunter2"  # stored intact
    with pytest.raises(RegistryError) as info:
        registry.delete_service("db")
    assert info.value.kind == "conflict" and "hello" in info.value.reason
    with pytest.raises(NotFoundError):
        registry.set_bindings("hello", ["missing"])
    assert registry.bindings("hello") == ["cache", "db"]  # the failed call changed nothing
    registry.delete_endpoint("hello")
    registry.delete_service("db")
    assert [s.name for s in registry.services()] == ["cache"]


def test_mask_secrets_leaves_plain_values():
    assert mask_secrets({"host": "h", "port": 5432, "secret_key": "", "token": None}) == {
        "host": "h", "port": 5432, "secret_key": "", "token": None}
    assert mask_secrets({"aws_secret_access_key": "x"}) == {"aws_secret_access_key": "****"}


def test_generation_grows_with_every_write(registry):
    start = registry.generation()
    registry.put_endpoint(endpoint())
    registry.set_state("hello", "running")
    assert registry.generation() == start + 2
    with pytest.raises(RegistryError):
        registry.set_state("hello", "bogus")
    assert registry.generation() == start + 2


def test_fresh_database_is_at_the_latest_schema_in_wal_mode(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    reg = SQLiteRegistry(path)
    assert reg.schema_version == len(MIGRATIONS)
    reg.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_run_in_order_and_keep_data(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    old = SQLiteRegistry(path)
    old.put_endpoint(endpoint())
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


def test_locked_database_raises_a_clear_error_and_loses_nothing(tmp_path, registry):
    registry.put_endpoint(endpoint())
    other = sqlite3.connect(registry.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(RegistryError) as info:
            registry.set_state("hello", "running")
        assert time.monotonic() - started < 5
        assert "locked" in info.value.reason and registry.path in info.value.reason
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert registry.get_endpoint("hello").state == "created"
    assert registry.set_state("hello", "running").state == "running"


def test_unopenable_path_is_a_registry_error(tmp_path):
    with pytest.raises(RegistryError):
        SQLiteRegistry(str(tmp_path / "missing-dir" / "r.sqlite3"))
