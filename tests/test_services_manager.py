"""ServiceManager itself: built-in defaults, bindings, frames, configs, masking, closing."""

import pytest

from edgebook.services import ServiceConfigError, ServiceManager, mask
from servers import async_test
from service_calls import Caller


@async_test
async def test_default_database_works_with_no_configuration(tmp_path):
    manager = ServiceManager(tmp_path)
    call = Caller(manager)  # bound to nothing at all
    try:
        await call("default", "db.execute", {"sql": "create table notes (body text)"})
        await call("default", "db.execute", {"sql": "insert into notes values (?)",
                                             "params": ["hi"]})
        rows = (await call("default", "db.query", {"sql": "select body from notes"}))["rows"]
        assert rows == [{"body": "hi"}]
        assert (tmp_path / "services" / "default.sqlite3").is_file()
        await call("files", "objects.put", {"key": "a.txt", "data": "aGk=",
                                            "content_type": "text/plain"})
        assert (tmp_path / "services" / "files" / "data" / "a.txt").read_bytes() == b"hi"
        assert manager.names() == ["default", "files"]
        assert manager.describe("default") == {
            "name": "default", "kind": "sqlite", "builtin": True,
            "config": {"path": "services/default.sqlite3", "pool_size": 4,
                       "busy_timeout": 5.0}}
        assert (await manager.test("default"))["ok"] is True
    finally:
        await manager.close()


@async_test
async def test_unbound_services_are_refused_with_a_clear_message(tmp_path):
    manager = ServiceManager(tmp_path)
    await manager.put("shop", "sqlite", {})
    try:
        error = await Caller(manager, endpoint="orders").error(
            "shop", "db.query", {"sql": "select 1"})
        assert (error.kind, error.message) == (
            "not_bound", "endpoint 'orders' is not bound to service 'shop'; bind it with "
                         "--service shop")
        error = await Caller(manager, endpoint="orders", bindings={"gone"}).error(
            "gone", "db.query", {"sql": "select 1"})
        assert (error.kind, error.message) == (
            "not_bound", "endpoint 'orders' is bound to service 'gone', but no such service "
                         "exists")
        bound = Caller(manager, endpoint="orders", bindings={"shop"})
        assert (await bound("shop", "db.query", {"sql": "select 1 as x"}))["rows"] == [{"x": 1}]
    finally:
        await manager.close()


@async_test
async def test_malformed_frames_are_bad_requests(tmp_path):
    manager = ServiceManager(tmp_path)
    try:
        for frame, message in [
                ({"service": "default"}, "a service call needs an 'op'"),
                ({"op": "db.query"}, "a service call needs a 'service' name"),
                ({"service": "default", "op": "db.query", "args": [1]},
                 "a service call's 'args' must be an object"),
                ({"service": "default", "op": "db.nope"}, None)]:
            reply = await manager.call("ep", set(), {"type": "service_call",
                                                     "request_id": "r", "call_id": 3, **frame})
            assert reply["ok"] is False and reply["call_id"] == 3
            assert reply["error"]["kind"] == "bad_request"
            if message:
                assert reply["error"]["message"] == message
    finally:
        await manager.close()


@async_test
async def test_a_bug_in_a_connector_is_an_internal_error_with_a_logged_traceback(
        tmp_path, caplog):
    manager = ServiceManager(tmp_path)

    async def broken(op, args, ctx):
        raise RuntimeError("secret detail")

    manager._connectors["default"].call = broken
    try:
        error = await Caller(manager).error("default", "db.query", {"sql": "select 1"})
        assert error.kind == "internal" and "secret detail" not in error.message
        assert any("secret detail" in (r.exc_text or "") or r.exc_info for r in caplog.records
                   if r.name.startswith("edgebook.services"))
    finally:
        await manager.close()


@async_test
async def test_replace_remove_and_builtin_comes_back(tmp_path):
    manager = ServiceManager(tmp_path)
    call = Caller(manager)
    try:
        await manager.put("default", "sqlite", {"path": "other.sqlite3"})
        assert manager.describe("default")["builtin"] is False
        error = await call.error("default", "db.query", {"sql": "select 1"})
        assert error.kind == "not_bound"  # a configured "default" needs a binding
        await manager.remove("default")
        assert manager.describe("default")["builtin"] is True
        assert (await call("default", "db.query", {"sql": "select 1 as x"}))["rows"]
        await manager.put("extra", "sqlite", {})
        await manager.remove("extra")
        assert "extra" not in manager.names()
        with pytest.raises(KeyError):
            manager.describe("extra")
    finally:
        await manager.close()


def test_configs_are_checked_with_clear_messages():
    check = ServiceManager.check
    assert check("cache", "redis", {"url": "redis://127.0.0.1:6379/0"})["max_connections"] == 10
    for name, kind, config, message in [
            ("x", "mysql", {}, "unknown service kind 'mysql'"),
            ("bad name!", "sqlite", {}, "a service name is"),
            ("x", "redis", {"url": "http://nope"}, "must start with redis://"),
            ("x", "redis", {"prot": 1}, "unknown redis option"),
            ("x", "postgres", {"max_size": 0}, "'max_size' must be an integer above 0"),
            ("x", "postgres", {"min_size": 5, "max_size": 2}, "'min_size' must not be above"),
            ("x", "s3", {}, "'bucket' is required"),
            ("x", "s3", {"bucket": "b", "access_key_id": "k"}, "give both"),
            ("x", "files", {"path": "/etc"}, "inside the data dir"),
            ("x", "files", {"path": "a/../../up"}, "inside the data dir"),
            ("x", "sqlite", {"path": "/etc/shadow.sqlite3"}, "inside the data dir"),
            ("x", "sqlite", {"path": "services/../../registry.sqlite3"}, "inside the data dir"),
            ("x", "sqlite", {"path": "a\x00b"}, "inside the data dir"),
            ("x", "sqlite", [], "a service config is a JSON object")]:
        with pytest.raises(ServiceConfigError, match=message):
            check(name, kind, config)


def test_mask_hides_secrets_and_url_passwords():
    shown = mask({"password": "pw", "user": "u", "dsn": "postgresql://u:pw@h:5432/db",
                  "empty": "", "url": "redis://h:6379"}, {"password", "empty"})
    assert shown == {"password": "****", "user": "u", "dsn": "postgresql://u:****@h:5432/db",
                     "empty": "", "url": "redis://h:6379"}


@async_test
async def test_two_managers_share_nothing(tmp_path):
    one, two = ServiceManager(tmp_path / "a"), ServiceManager(tmp_path / "b")
    try:
        await Caller(one)("default", "db.execute", {"sql": "create table only_here (x int)"})
        error = await Caller(two).error("default", "db.query", {"sql": "select * from only_here"})
        assert error.kind == "database"
    finally:
        await one.close()
        await two.close()
    error = await Caller(one).error("default", "db.query", {"sql": "select 1"})
    assert error.kind == "not_bound"  # closed: nothing is configured any more
