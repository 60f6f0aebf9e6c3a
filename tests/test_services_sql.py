"""SQL services through ServiceManager, on SQLite and on a real PostgreSQL server."""

import asyncio
import base64
import time
import uuid

import pytest

from edgebook.services import ServiceManager
from edgebook.services.postgres import translate_placeholders
from servers import async_test, own_postgres, postgres_server  # noqa: F401  (fixtures)
from service_calls import Caller


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """``(kind, config)`` of a database service; tables get unique names per test."""
    if request.param == "sqlite":
        return "sqlite", {"path": "services/test.sqlite3"}
    return "postgres", request.getfixturevalue("postgres_server").config()


def table_name():
    return "t_" + uuid.uuid4().hex[:12]


async def open_db(tmp_path, kind, config, **options):
    # A loaded machine can take seconds to fork a PostgreSQL backend; the tests about
    # timeouts pass their own.
    options.setdefault("connect_timeout", 10.0)
    manager = ServiceManager(tmp_path, **options)
    await manager.put("db", kind, config)
    return manager, Caller(manager, bindings={"db"})


@async_test
async def test_query_execute_and_rows_affected(db, tmp_path):
    manager, call = await open_db(tmp_path, *db)
    t = table_name()
    try:
        await call("db", "db.execute", {"sql": f"create table {t} (id integer primary key, "
                                               "name text, status text)"})
        for i, (name, status) in enumerate([("rex", "sold"), ("tom", "available"),
                                            ("kit", "sold")], 1):
            done = await call("db", "db.execute", {
                "sql": f"insert into {t} (id, name, status) values (?, ?, ?)",
                "params": [str(i), name, status]})
            assert done == {"rows_affected": 1}
        found = await call("db", "db.query", {
            "sql": f"select id, name from {t} where status = ? order by id", "params": ["sold"]})
        assert found == {"rows": [{"id": 1, "name": "rex"}, {"id": 3, "name": "kit"}],
                         "rows_affected": 0}
        # JSON numbers work as parameters too, and the count comes back as a number.
        found = await call("db", "db.query", {
            "sql": f"select count(*) as n from {t} where id > ?", "params": [1]})
        assert found["rows"] == [{"n": 2}]
        done = await call("db", "db.execute", {
            "sql": f"update {t} set status = ? where status = ?", "params": ["gone", "sold"]})
        assert done == {"rows_affected": 2}
        done = await call("db", "db.execute", {"sql": f"delete from {t} where id = ?",
                                               "params": ["2"]})
        assert done == {"rows_affected": 1}
        empty = await call("db", "db.query", {"sql": f"select * from {t} where id = ?",
                                              "params": ["2"]})
        assert empty == {"rows": [], "rows_affected": 0}
        # db.query reports the database's own count, with or without RETURNING
        done = await call("db", "db.query", {
            "sql": f"update {t} set status = ? where id >= ?", "params": ["x", 1]})
        assert done == {"rows": [], "rows_affected": 2}
        done = await call("db", "db.query", {
            "sql": f"  /* a note */ update {t} set status = ? where id = ? returning id",
            "params": ["y", 1]})
        assert done == {"rows": [{"id": 1}], "rows_affected": 1}
    finally:
        await manager.close()


@async_test
async def test_sql_injection_attempts_stay_inert(db, tmp_path):
    manager, call = await open_db(tmp_path, *db)
    t = table_name()
    try:
        await call("db", "db.execute", {"sql": f"create table {t} (id text primary key, "
                                               "name text)"})
        evil = f"x'); DROP TABLE {t}; --"
        await call("db", "db.execute", {"sql": f"insert into {t} (id, name) values (?, ?)",
                                        "params": ["1", evil]})
        rows = (await call("db", "db.query", {"sql": f"select name from {t} where id = ?",
                                              "params": ["1"]}))["rows"]
        assert rows == [{"name": evil}]
        # A classic always-true suffix is just a string that matches no id.
        rows = (await call("db", "db.query", {"sql": f"select * from {t} where id = ?",
                                              "params": ["1' OR '1'='1"]}))["rows"]
        assert rows == []
        # A second statement in one call is refused, and does not run.
        error = await call.error("db", "db.query", {"sql": f"select 1; drop table {t}"})
        assert error.kind == "database"
        rows = (await call("db", "db.query", {"sql": f"select count(*) as n from {t}"}))["rows"]
        assert rows == [{"n": 1}]
        # Storage ids and filters are bound too.
        docs = {"storage_type": "database", "table_name": t + "_docs"}
        await call("db", "storage.create", {**docs, "id": "a' OR '1'='1", "data": {"n": 1}})
        assert await call("db", "storage.get", {**docs, "id": "a"}) is None
        assert await call("db", "storage.list", {**docs, "filter": "x' OR '1'='1"}) == []
        error = await call.error("db", "storage.list",
                                 {"storage_type": "database", "table_name": "pets; drop"})
        assert error.kind == "bad_request"
    finally:
        await manager.close()


@async_test
async def test_errors_have_kinds(db, tmp_path):
    manager, call = await open_db(tmp_path, *db)
    try:
        error = await call.error("db", "db.query", {"sql": "select * from no_such_table_x"})
        assert error.kind == "database"
        assert "no_such_table_x" in error.message
        error = await call.error("db", "db.query", {"params": []})
        assert (error.kind, error.message) == ("bad_request", "missing argument 'sql'")
        error = await call.error("db", "db.query", {"sql": "select 1", "params": "x"})
        assert error.kind == "bad_request"
        error = await call.error("db", "redis.get", {"key": "k"})
        assert error.kind == "bad_request" and "has no operation 'redis.get'" in error.message
        # The service still works after the failures.
        assert (await call("db", "db.query", {"sql": "select 1 as one"}))["rows"] == [{"one": 1}]
    finally:
        await manager.close()


@async_test
async def test_transaction_commit_and_rollback(db, tmp_path):
    manager, call = await open_db(tmp_path, *db)
    t = table_name()
    try:
        await call("db", "db.execute", {"sql": f"create table {t} (n integer)"})
        tx = (await call("db", "db.begin"))["tx"]
        await call("db", "db.execute", {"sql": f"insert into {t} values (?)", "params": [1],
                                        "tx": tx})
        inside = await call("db", "db.query", {"sql": f"select n from {t}", "tx": tx})
        assert inside["rows"] == [{"n": 1}]
        assert await call("db", "db.commit", {"tx": tx}) is None
        tx = (await call("db", "db.begin"))["tx"]
        await call("db", "db.execute", {"sql": f"insert into {t} values (?)", "params": [2],
                                        "tx": tx})
        assert await call("db", "db.rollback", {"tx": tx}) is None
        rows = (await call("db", "db.query", {"sql": f"select n from {t} order by n"}))["rows"]
        assert rows == [{"n": 1}]
        # A finished transaction cannot be used again.
        error = await call.error("db", "db.commit", {"tx": tx})
        assert error.kind == "bad_request" and "not open" in error.message
        assert not manager.has_open_transaction(call.endpoint, call.request_id)
    finally:
        await manager.close()


@async_test
async def test_request_end_rolls_back_and_transactions_stay_in_their_request(db, tmp_path):
    manager, call = await open_db(tmp_path, *db)
    t = table_name()
    try:
        await call("db", "db.execute", {"sql": f"create table {t} (n integer)"})
        tx = (await call("db", "db.begin"))["tx"]
        await call("db", "db.execute", {"sql": f"insert into {t} values (1)", "tx": tx})
        other = Caller(manager, bindings={"db"}, request_id="req-2")
        error = await other.error("db", "db.query", {"sql": "select 1", "tx": tx})
        assert error.kind == "bad_request"
        intruder = Caller(manager, endpoint="other", bindings={"db"}, request_id="req-1")
        error = await intruder.error("db", "db.commit", {"tx": tx})
        assert error.kind == "bad_request"
        assert manager.has_open_transaction("ep", "req-1")
        await manager.release_request("ep", "req-1")
        assert not manager.has_open_transaction("ep", "req-1")
        await manager.release_request("ep", "req-1")  # twice is harmless
        rows = (await other("db", "db.query", {"sql": f"select count(*) as n from {t}"}))["rows"]
        assert rows == [{"n": 0}]
        # The pinned connection went back to the pool: a new transaction works.
        tx = (await other("db", "db.begin"))["tx"]
        await other("db", "db.commit", {"tx": tx})
    finally:
        await manager.close()


@async_test
async def test_a_request_ending_leaves_another_endpoints_same_id_alone(db, tmp_path):
    manager, first = await open_db(tmp_path, *db)
    second = Caller(manager, endpoint="other", bindings={"db"}, request_id=first.request_id)
    t = table_name()
    try:
        await first("db", "db.execute", {"sql": f"create table {t} (n integer)"})
        # (one open transaction: SQLite holds one writer at a time)
        theirs = (await second("db", "db.begin"))["tx"]
        await second("db", "db.execute", {"sql": f"insert into {t} values (2)", "tx": theirs})
        await manager.release_request("ep", first.request_id)  # ep's request ended
        assert manager.has_open_transaction("other", first.request_id)
        assert await second("db", "db.commit", {"tx": theirs}) is None  # still open
        rows = (await first("db", "db.query", {"sql": f"select n from {t}"}))["rows"]
        assert rows == [{"n": 2}]
    finally:
        await manager.close()


@async_test
async def test_forgotten_transaction_times_out(db, tmp_path):
    manager, call = await open_db(tmp_path, *db, transaction_timeout=0.3)
    t = table_name()
    try:
        await call("db", "db.execute", {"sql": f"create table {t} (n integer)"})
        tx = (await call("db", "db.begin"))["tx"]
        await call("db", "db.execute", {"sql": f"insert into {t} values (1)", "tx": tx})
        deadline = time.monotonic() + 10
        while (await call.reply("db", "db.query", {"sql": "select 1", "tx": tx}))["ok"]:
            assert time.monotonic() < deadline, "the transaction never expired"
            await asyncio.sleep(0.05)
        rows = (await call("db", "db.query", {"sql": f"select count(*) as n from {t}"}))["rows"]
        assert rows == [{"n": 0}]
    finally:
        await manager.close()


@async_test
async def test_petstore(db, tmp_path):
    """The original's pet store: create, list with a status filter, get, update, delete."""
    manager, call = await open_db(tmp_path, *db)
    pets = {"storage_type": "database", "table_name": table_name()}
    try:
        assert await call("db", "storage.list", {**pets, "filter": None}) == []
        rex = {"id": "pet-1", "name": "Rex", "tags": ["dog"], "status": "available"}
        tom = {"id": "pet-2", "name": "Tom", "tags": [], "status": "sold"}
        kit = {"id": "pet-3", "name": "Kit", "category": None, "status": "available"}
        for pet in (rex, tom, kit):
            assert await call("db", "storage.create", {**pets, "id": pet["id"], "data": pet}) \
                is None
        assert await call("db", "storage.list", {**pets, "filter": None}) == [rex, tom, kit]
        assert await call("db", "storage.list", {**pets, "filter": "available"}) == [rex, kit]
        assert await call("db", "storage.list", {**pets, "filter": "pending"}) == []
        assert await call("db", "storage.get", {**pets, "id": "pet-2"}) == tom
        assert await call("db", "storage.get", {**pets, "id": "pet-9"}) is None
        sold = {**rex, "status": "sold"}
        assert await call("db", "storage.update", {**pets, "id": "pet-1", "data": sold}) is None
        assert await call("db", "storage.get", {**pets, "id": "pet-1"}) == sold
        assert await call("db", "storage.list", {**pets, "filter": "sold"}) == [sold, tom]
        assert await call("db", "storage.delete", {**pets, "id": "pet-2"}) is True
        assert await call("db", "storage.delete", {**pets, "id": "pet-2"}) is False
        assert await call("db", "storage.get", {**pets, "id": "pet-2"}) is None
        error = await call.error("db", "storage.create", {**pets, "id": "pet-1", "data": {}})
        assert error.kind == "storage" and "already exists" in error.message
        error = await call.error("db", "storage.update", {**pets, "id": "pet-7", "data": {}})
        assert error.kind == "storage" and "does not exist" in error.message
        # An object filter matches several fields, typed.
        found = await call("db", "storage.list", {**pets, "filter": {"status": "available",
                                                                      "name": "Kit"}})
        assert found == [kit]
    finally:
        await manager.close()


@async_test
async def test_sqlite_values_are_json_safe(tmp_path):
    manager, call = await open_db(tmp_path, "sqlite", {})
    try:
        row = (await call("db", "db.query", {
            "sql": "select x'00ff10' as blob, 1.5 as real, null as missing, ? as text, "
                   "? as flag, ? as doc", "params": ["é\n", True, {"a": [1]}]}))["rows"][0]
        assert row == {"blob": base64.b64encode(b"\x00\xff\x10").decode(), "real": 1.5,
                       "missing": None, "text": "é\n", "flag": 1, "doc": '{"a":[1]}'}
    finally:
        await manager.close()


@async_test
async def test_postgres_values_and_string_parameters(postgres_server, tmp_path):
    manager, call = await open_db(tmp_path, "postgres", postgres_server.config())
    t = table_name()
    try:
        await call("db", "db.execute", {"sql": f"""create table {t} (
            id int primary key, big bigint, price numeric(10,2), ratio float8, ok boolean,
            day date, at timestamptz, uid uuid, raw bytea, doc jsonb, tags text[])"""})
        # Every parameter as a string, the way DbPool::query sends them.
        await call("db", "db.execute", {
            "sql": f"insert into {t} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "params": ["1", "9007199254740993", "12.50", "0.25", "true", "2024-05-01",
                       "2024-05-01T10:00:00Z", "12345678-1234-5678-1234-567812345678",
                       base64.b64encode(b"\x00\x01\xfe").decode(), '{"a": [1, null]}',
                       '["x", "y"]']})
        row = (await call("db", "db.query", {"sql": f"select * from {t} where id = $1",
                                             "params": [1]}))["rows"][0]
        assert row == {"id": 1, "big": 9007199254740993, "price": "12.50", "ratio": 0.25,
                       "ok": True, "day": "2024-05-01", "at": "2024-05-01T10:00:00+00:00",
                       "uid": "12345678-1234-5678-1234-567812345678",
                       "raw": base64.b64encode(b"\x00\x01\xfe").decode(),
                       "doc": {"a": [1, None]}, "tags": ["x", "y"]}
        error = await call.error("db", "db.query", {"sql": f"select * from {t} where id = ?",
                                                    "params": ["one"]})
        assert error.kind == "bad_request" and "$1" in error.message
        error = await call.error("db", "db.query", {"sql": f"select * from {t} where id = ?",
                                                    "params": []})
        assert error.kind == "bad_request"
    finally:
        await manager.close()


@async_test
async def test_slow_statement_times_out_and_the_service_recovers(db, tmp_path):
    kind, config = db
    manager, call = await open_db(tmp_path, kind, {**config, "timeout": 0.5})
    slow = ("select pg_sleep(5)" if kind == "postgres" else
            "with recursive c(x) as (select 1 union all select x + 1 from c) "
            "select count(*) from c")
    try:
        started = time.monotonic()
        error = await call.error("db", "db.query", {"sql": slow})
        assert error.kind == "timeout"
        assert time.monotonic() - started < 10  # not a client default: a minute, or never
        assert (await call("db", "db.query", {"sql": "select 2 as two"}))["rows"] == [{"two": 2}]
    finally:
        await manager.close()


@async_test
async def test_postgres_down_fails_fast_and_recovers(own_postgres, tmp_path):
    manager, call = await open_db(tmp_path, "postgres", own_postgres.config(),
                                  connect_timeout=1.0)
    try:
        assert (await call("db", "db.query", {"sql": "select 1 as one"}))["rows"] == [{"one": 1}]
        own_postgres.stop()
        started = time.monotonic()
        error = await call.error("db", "db.query", {"sql": "select 1 as one"})
        assert error.kind == "unavailable"
        assert error.message == "postgres service 'db' is not reachable"
        assert time.monotonic() - started < 10  # not a client default: a minute, or never
        own_postgres.start()
        assert (await call("db", "db.query", {"sql": "select 1 as one"}))["rows"] == [{"one": 1}]
    finally:
        await manager.close()


@async_test
async def test_postgres_not_running_at_first_use(tmp_path):
    manager = ServiceManager(tmp_path, connect_timeout=1.0)
    from servers import free_port
    await manager.put("db", "postgres", {"port": free_port(), "password": "pw"})
    call = Caller(manager, bindings={"db"})
    try:
        error = await call.error("db", "db.query", {"sql": "select 1"})
        assert error.kind == "unavailable"
        result = await manager.test("db")
        assert result["ok"] is False and result["error"]["kind"] == "unavailable"
    finally:
        await manager.close()


@async_test
async def test_postgres_wrong_password_and_masking(postgres_server, tmp_path):
    manager = ServiceManager(tmp_path)
    await manager.put("db", "postgres", {**postgres_server.config(), "password": "wrong"})
    await manager.put("viadsn", "postgres", {"dsn": postgres_server.dsn()})
    try:
        result = await manager.test("db")
        assert result == {"ok": False, "error": {
            "kind": "unavailable",
            "message": "postgres service 'db' refused the configured credentials",
            "detail": 'password authentication failed for user "edgebook"'}}
        assert "wrong" not in str(result)  # the cause, never the secret
        assert manager.describe("db")["config"]["password"] == "****"
        shown = manager.describe("viadsn")["config"]["dsn"]
        assert postgres_server.password not in shown and ":****@" in shown
        result = await manager.test("viadsn")
        assert result["ok"] is True and result["server_version"]
    finally:
        await manager.close()


def test_question_marks_become_numbered_placeholders():
    assert translate_placeholders("select ? , ?") == "select $1 , $2"
    assert translate_placeholders("select '?', \"a?\", ? -- ?\n") == \
        "select '?', \"a?\", $1 -- ?\n"
    assert translate_placeholders("select 'it''s ?', ?") == "select 'it''s ?', $1"
    assert translate_placeholders("select $$ ? $$, $tag$ ? $tag$, ?") == \
        "select $$ ? $$, $tag$ ? $tag$, $1"
    assert translate_placeholders("select E'\\' ?', ?") == "select E'\\' ?', $1"
    assert translate_placeholders("/* ? /* ? */ ? */ ?") == "/* ? /* ? */ ? */ $1"
    # A statement with $n placeholders keeps its '?' (the jsonb operator).
    assert translate_placeholders("select doc ? 'a' from t where id = $1") == \
        "select doc ? 'a' from t where id = $1"


def test_question_mark_operators_stay_operators():
    cases = {
        "select doc ? 'a' from t where id = ?": "select doc ? 'a' from t where id = $1",
        "select * from t where doc ?| array['a', 'b'] and doc ?& ?":
            "select * from t where doc ?| array['a', 'b'] and doc ?& $1",
        "select * from t where doc @? '$.a' and n > ?": "select * from t where doc @? '$.a' and n > $1",
        "select (doc -> 'k') ? 'x', t.doc ? ?, \"Doc\" ? 'y' from t":
            "select (doc -> 'k') ? 'x', t.doc ? $1, \"Doc\" ? 'y' from t",
        "update t set n=?, m = ?::int where id in (?, ?) returning doc ? 'k'":
            "update t set n=$1, m = $2::int where id in ($3, $4) returning doc ? 'k'",
        "select ? , ? /* doc ? */ -- ?\n": "select $1 , $2 /* doc ? */ -- ?\n",
        "select case when ? then 1 else ? end ? 'k' limit ?":
            "select case when $1 then 1 else $2 end ? 'k' limit $3",
    }
    for sql, expected in cases.items():
        assert translate_placeholders(sql) == expected, sql


@async_test
async def test_jsonb_question_mark_operators_with_question_mark_parameters(postgres_server,
                                                                         tmp_path):
    manager, call = await open_db(tmp_path, "postgres", postgres_server.config())
    t = table_name()
    try:
        await call("db", "db.execute", {"sql": f"create table {t} (id int, doc jsonb)"})
        await call("db", "db.execute", {
            "sql": f"insert into {t} values (1, ?), (2, ?)",
            "params": [{"a": 1, "b": 2}, {"b": 3}]})
        has_a = await call("db", "db.query", {
            "sql": f"select id from {t} where doc ? 'a' and id > ? order by id", "params": [0]})
        assert has_a["rows"] == [{"id": 1}]
        any_of = await call("db", "db.query", {
            "sql": f"select id from {t} where doc ?| array['a', 'b'] and id < ? order by id",
            "params": [10]})
        assert any_of["rows"] == [{"id": 1}, {"id": 2}]
        all_of = await call("db", "db.query", {
            "sql": f"select id from {t} where doc ?& array['a', 'b'] and id <> ?",
            "params": [5]})
        assert all_of["rows"] == [{"id": 1}]
    finally:
        await manager.close()
