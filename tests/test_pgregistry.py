"""PostgresRegistry and PostgresBuildQueue on a real PostgreSQL server: the registry's
behaviour, the change feed between gateways (latency, lost connections, a stopped server),
optimistic concurrency, migrations, and the build queue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid

import pytest

from edgebook.gateway.buildqueue import MAX_PAYLOAD, PostgresBuildQueue, progress_payload
from edgebook.gateway import pgregistry
from edgebook.gateway.pgregistry import (MIGRATIONS, PostgresRegistry, RegistryUnavailable,
                                         describe_target)
from edgebook.gateway.registry import EndpointRecord, NotFoundError, RegistryError, ServiceRecord
from servers import PostgresServer, _server, async_test, own_postgres  # noqa: F401

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def pg_server():
    server = _server(PostgresServer)
    yield server
    server.cleanup()


async def _admin(server, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.dsn(), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def dsn(pg_server):
    """A fresh database of the test's own on the module's server."""
    name = "t_" + uuid.uuid4().hex[:12]
    asyncio.run(_admin(pg_server, f"CREATE DATABASE {name}"))
    yield pg_server.dsn().rsplit("/", 1)[0] + "/" + name
    asyncio.run(_admin(pg_server, f"DROP DATABASE {name} WITH (FORCE)"))


async def open_registry(dsn, **options):
    options.setdefault("connect_timeout", 10.0)
    return await PostgresRegistry.open(dsn, **options)


def endpoint(name="hello", **fields):
    fields.setdefault("source", "fn x() {}")
    return EndpointRecord(name=name, method="GET", path=f"/{name}", **fields)


async def query(dsn, sql, *args):
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


# -- the registry's behaviour (as the SQLite registry's tests check it) ------------------------

@async_test
async def test_endpoint_crud_keeps_state_and_created_across_updates(dsn):
    registry = await open_registry(dsn)
    try:
        created = await registry.put_endpoint(endpoint(
            deps=["rand@0.8"], options={"workers": 2},
            origin={"notebook": "a.ipynb", "cell": "c1"}))
        assert created.state == "created" and created.deps == ["rand@0.8"]
        assert created.origin == {"notebook": "a.ipynb", "cell": "c1"}
        await registry.set_state("hello", "running", "revision 1 serving")
        await registry.set_live_revision("hello", 1)
        await asyncio.sleep(0.01)
        updated = await registry.put_endpoint(endpoint(source="fn y() {}",
                                                       options={"workers": 3}))
        assert updated.source == "fn y() {}" and updated.options == {"workers": 3}
        assert updated.state == "running" and updated.live_revision == 1
        assert updated.created == created.created and updated.updated > created.updated
        assert [e.name for e in registry.endpoints()] == ["hello"]
        assert registry.get_endpoint("hello") == updated  # the mirror has the write
        # a record read from the mirror is a copy: changing it changes nothing stored
        registry.get_endpoint("hello").options["workers"] = 99
        assert registry.get_endpoint("hello").options == {"workers": 3}
        await registry.delete_endpoint("hello")
        assert registry.find_endpoint("hello") is None
        with pytest.raises(NotFoundError):
            registry.get_endpoint("hello")
        with pytest.raises(NotFoundError):
            await registry.delete_endpoint("hello")
    finally:
        await registry.aclose()


@async_test
async def test_states_and_desired_states_are_checked(dsn):
    registry = await open_registry(dsn)
    try:
        await registry.put_endpoint(endpoint())
        with pytest.raises(RegistryError):
            await registry.set_state("hello", "dancing")
        with pytest.raises(RegistryError):
            await registry.set_desired("hello", "maybe")
        with pytest.raises(RegistryError):
            await registry.put_endpoint(endpoint(desired="maybe"))
        record = await registry.set_state("hello", "deploy_failed", "exit 1", "panic at line 3")
        assert (record.state, record.reason, record.stderr_tail) == (
            "deploy_failed", "exit 1", "panic at line 3")
        assert (await registry.set_desired("hello", "stopped")).desired == "stopped"
        with pytest.raises(NotFoundError) as info:
            await registry.set_state("nope", "running")
        assert info.value.reason == "no endpoint named 'nope'"
    finally:
        await registry.aclose()


@async_test
async def test_revisions_number_per_endpoint_and_go_with_it(dsn):
    registry = await open_registry(dsn)
    try:
        await registry.put_endpoint(endpoint("a"))
        await registry.put_endpoint(endpoint("b"))
        first = await registry.add_revision("a", content_hash="h1", binary="/bin/h1",
                                            profile="dev", build_status="ok",
                                            source="fn a() {}", deps=["rand@0.8"],
                                            artifact="ab" * 32)
        second = await registry.add_revision("a", content_hash=None, binary=None,
                                             profile="dev", build_status="queued")
        other = await registry.add_revision("b", content_hash="h2", binary="/bin/h2",
                                            profile="release", build_status="ok")
        assert (first.number, second.number, other.number) == (1, 2, 1)
        assert (first.source, first.deps, first.artifact) == ("fn a() {}", ["rand@0.8"],
                                                              "ab" * 32)
        assert [r.number for r in registry.revisions("a")] == [2, 1]
        done = await registry.update_revision("a", 2, build_status="failed",
                                              diagnostics=[{"level": "error", "line": 3}])
        assert done.build_status == "failed" and done.binary is None
        assert registry.get_revision("a", 2).diagnostics == [{"level": "error", "line": 3}]
        kept = await registry.update_revision("a", 1, build_status="ok", artifact="cd" * 32)
        assert (kept.binary, kept.content_hash, kept.artifact) == ("/bin/h1", "h1", "cd" * 32)
        with pytest.raises(NotFoundError) as info:
            await registry.update_revision("a", 9, build_status="ok")
        assert info.value.reason == "endpoint 'a' has no revision 9"
        with pytest.raises(NotFoundError):
            await registry.add_revision("zzz", content_hash=None, binary=None, profile="dev",
                                        build_status="ok")
        await registry.delete_endpoint("a")
        assert registry.revisions("a") == []
        with pytest.raises(NotFoundError):
            registry.get_revision("a", 1)
        assert [r[0] for r in await query(dsn, "SELECT endpoint FROM revisions")] == ["b"]
    finally:
        await registry.aclose()


@async_test
async def test_services_bindings_and_masking(dsn):
    registry = await open_registry(dsn)
    try:
        await registry.put_endpoint(endpoint())
        await registry.put_service(ServiceRecord(name="db", kind="postgres", config={
            "url": "postgres://app:hunter2@db.local/app", "password": "hunter2",
            "pool": {"size": 4, "api_key": "k"}, "user": "app"}))
        await registry.put_service(ServiceRecord(name="cache", kind="redis", config={}))
        await registry.set_bindings("hello", ["db", "cache", "db"])
        assert registry.bindings("hello") == ["cache", "db"]
        assert registry.bound_endpoints("db") == ["hello"]
        public = registry.get_service("db").to_public_dict()
        assert "hunter2" not in repr(public) and "'k'" not in repr(public)
        assert public["config"]["url"] == "postgres://app:****@db.local/app"
        assert registry.get_service("db").config["password"] == "hunter2"  # stored intact
        with pytest.raises(RegistryError) as info:
            await registry.delete_service("db")
        assert info.value.kind == "conflict" and "hello" in info.value.reason
        with pytest.raises(NotFoundError):
            await registry.set_bindings("hello", ["missing"])
        assert registry.bindings("hello") == ["cache", "db"]  # the failed call changed nothing
        await registry.set_bindings("hello", ["cache"])  # replaces
        assert registry.bindings("hello") == ["cache"] and registry.bound_endpoints("db") == []
        await registry.delete_service("db")
        with pytest.raises(NotFoundError):
            await registry.delete_service("db")
        await registry.delete_endpoint("hello")  # bindings go with it
        assert registry.bound_endpoints("cache") == []
        await registry.delete_service("cache")
        assert registry.services() == []
    finally:
        await registry.aclose()


@async_test
async def test_every_write_moves_the_version_by_one_and_stamps_its_row(dsn):
    registry = await open_registry(dsn)
    try:
        start = registry.generation()
        assert start == registry.version == 0
        created = await registry.put_endpoint(endpoint())
        assert created.version == start + 1 == registry.generation()
        running = await registry.set_state("hello", "running")
        assert running.version == start + 2
        await registry.add_revision("hello", content_hash=None, binary=None, profile="dev",
                                    build_status="ok")
        assert registry.generation() == start + 3
        assert registry.get_endpoint("hello").version == start + 2  # its row was not written
        await registry.set_live_revision("hello", 1)
        assert registry.get_endpoint("hello").version == start + 4
        with pytest.raises(RegistryError):
            await registry.set_state("hello", "bogus")
        with pytest.raises(NotFoundError):
            await registry.set_state("nope", "running")
        assert registry.generation() == start + 4  # failed writes change nothing
        rows = await query(dsn, "SELECT version, kind, name FROM changes ORDER BY version")
        assert [tuple(r) for r in rows] == [(1, "endpoint", "hello"), (2, "endpoint", "hello"),
                                            (3, "revision", "hello"), (4, "endpoint", "hello")]
        assert (await query(dsn, "SELECT version FROM meta"))[0][0] == 4
    finally:
        await registry.aclose()


@async_test
async def test_expected_version_refuses_a_stale_or_duplicate_write(dsn):
    registry = await open_registry(dsn)
    try:
        created = await registry.put_endpoint(endpoint(), expected_version=0)
        with pytest.raises(RegistryError) as info:  # 0: create only
            await registry.put_endpoint(endpoint(), expected_version=0)
        assert info.value.kind == "conflict"
        updated = await registry.put_endpoint(endpoint(source="fn y() {}"),
                                              expected_version=created.version)
        with pytest.raises(RegistryError) as info:
            await registry.put_endpoint(endpoint(source="fn z() {}"),
                                        expected_version=created.version)
        assert info.value.kind == "conflict" and str(updated.version) in info.value.reason
        assert registry.get_endpoint("hello").source == "fn y() {}"
        with pytest.raises(RegistryError) as info:
            await registry.put_endpoint(endpoint("ghost"), expected_version=7)
        assert info.value.kind == "conflict" and registry.find_endpoint("ghost") is None
    finally:
        await registry.aclose()


@async_test
async def test_two_concurrent_updates_with_one_expected_version_one_wins(dsn):
    a = await open_registry(dsn)
    b = await open_registry(dsn)
    try:
        base = await a.put_endpoint(endpoint())
        assert await b.wait_version(base.version, 5)
        for round_ in range(5):
            version = a.get_endpoint("hello").version
            results = await asyncio.gather(
                a.put_endpoint(endpoint(source=f"fn a{round_}() {{}}"), expected_version=version),
                b.put_endpoint(endpoint(source=f"fn b{round_}() {{}}"), expected_version=version),
                return_exceptions=True)
            won = [r for r in results if isinstance(r, EndpointRecord)]
            lost = [r for r in results if isinstance(r, RegistryError)]
            assert len(won) == 1 and len(lost) == 1 and lost[0].kind == "conflict"
            assert await a.wait_version(won[0].version, 5) and await b.wait_version(
                won[0].version, 5)
            assert a.get_endpoint("hello").source == b.get_endpoint("hello").source == (
                won[0].source)
    finally:
        await a.aclose()
        await b.aclose()


@async_test
async def test_concurrent_writers_on_two_gateways_get_consecutive_versions_and_converge(dsn):
    a = await open_registry(dsn)
    b = await open_registry(dsn)
    try:
        await a.put_endpoint(endpoint())
        writes = []
        for i in range(20):
            writes.append(a.add_revision("hello", content_hash=f"a{i}", binary=None,
                                         profile="dev", build_status="ok"))
            writes.append(b.set_state("hello", "running", f"b{i}"))
        started = time.perf_counter()
        await asyncio.gather(*writes)
        elapsed = time.perf_counter() - started
        print(f"\n40 concurrent writes from two gateways: {elapsed * 1000:.0f} ms")
        assert await a.wait_version(41, 2) and await b.wait_version(41, 2)
        rows = await query(dsn, "SELECT version FROM changes ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, 42))
        assert [r.number for r in b.revisions("hello")] == list(range(20, 0, -1))
        assert a.get_endpoint("hello") == b.get_endpoint("hello")
        assert a.revisions("hello") == b.revisions("hello")
    finally:
        await a.aclose()
        await b.aclose()


# -- the change feed ---------------------------------------------------------------------------

@async_test
async def test_a_write_on_one_gateway_reaches_the_other_through_the_feed(dsn):
    seen: list[int] = []
    a = await open_registry(dsn)
    b = await open_registry(dsn, on_change=seen.append)
    try:
        assert a.connected and b.connected
        latencies, notify_to_applied, writes = [], [], []
        notified: dict[int, float] = {}
        original = b._on_notify

        def on_notify(*args):  # when B's feed hears of a version
            if args[3].isdigit():
                notified.setdefault(int(args[3]), time.perf_counter())
            original(*args)

        await b._listen_conn.remove_listener("edgebook_registry", original)
        await b._listen_conn.add_listener("edgebook_registry", on_notify)
        for i in range(20):
            started = time.perf_counter()
            record = await a.put_endpoint(endpoint(f"e{i}"))
            writes.append(time.perf_counter() - started)
            assert await b.wait_version(record.version, 1.0), "not visible on B within 1 s"
            applied = time.perf_counter()
            latencies.append(applied - started)
            notify_to_applied.append(applied - notified[record.version])
            assert b.get_endpoint(f"e{i}").version == record.version
        for series in (latencies, notify_to_applied, writes):
            series.sort()
        print(f"\nwrite on A to applied on B: median {latencies[10] * 1000:.1f} ms, "
              f"max {latencies[-1] * 1000:.1f} ms; NOTIFY heard on B to applied: median "
              f"{notify_to_applied[10] * 1000:.1f} ms, max {notify_to_applied[-1] * 1000:.1f} "
              f"ms; the write on A alone: median {writes[10] * 1000:.1f} ms (20 writes)")
        await asyncio.sleep(0.1)
        assert seen and seen == sorted(seen) and seen[-1] == a.version == b.version
        # a coroutine on_change works too, and a late or duplicated notice does nothing
        calls = []

        async def changed(version):
            calls.append(version)

        b.on_change = changed
        await a.set_state("e0", "running")
        assert await b.wait_version(a.version, 1.0)
        await asyncio.sleep(0.05)
        assert calls == [a.version]
        await query(dsn, "SELECT pg_notify('edgebook_registry', '1'), "
                         "pg_notify('edgebook_registry', 'junk')")
        await asyncio.sleep(0.2)
        assert b.version == a.version and calls == [a.version]
        assert len(b.endpoints()) == 20
    finally:
        await a.aclose()
        await b.aclose()


@async_test
async def test_a_killed_listen_connection_reconnects_and_resyncs(dsn):
    a = await open_registry(dsn)
    b = await open_registry(dsn)
    try:
        pid = b.listener_pid
        listening = await query(dsn, "SELECT pid FROM pg_stat_activity "
                                     "WHERE application_name = 'edgebook-registry-feed' "
                                     "AND datname = current_database()")
        assert pid in [r[0] for r in listening]
        await query(dsn, "SELECT pg_terminate_backend($1)", pid)
        # written while B is (probably) not listening: only the resync can bring it
        record = await a.put_endpoint(endpoint("after"))
        started = time.perf_counter()
        assert await b.wait_version(record.version, 5.0)
        print(f"\nB caught up {(time.perf_counter() - started) * 1000:.0f} ms after a write "
              "made while its LISTEN connection was killed")
        for _ in range(50):
            if b.connected and b.listener_pid not in (None, pid):
                break
            await asyncio.sleep(0.1)
        assert b.connected and b.listener_pid != pid and b.reconnects == 1
        second = await a.set_state("after", "running")  # the new connection gets notices
        assert await b.wait_version(second.version, 1.0)
    finally:
        await a.aclose()
        await b.aclose()


@async_test
async def test_a_stopped_server_leaves_reads_up_and_fails_writes_fast(own_postgres):
    dsn = own_postgres.dsn()
    a = await open_registry(dsn, connect_timeout=2.0)
    b = await open_registry(dsn, connect_timeout=2.0)
    try:
        await a.put_endpoint(endpoint())
        await a.put_service(ServiceRecord(name="db", kind="redis", config={}))
        assert await b.wait_version(a.version, 2)
        before = a.version
        await asyncio.to_thread(own_postgres.stop)
        for _ in range(50):
            if not a.connected and not b.connected:
                break
            await asyncio.sleep(0.1)
        assert not a.connected and not b.connected
        # reads: the last snapshot
        assert a.get_endpoint("hello").name == "hello" and b.get_service("db").kind == "redis"
        assert a.generation() == before
        # writes: a clear error within seconds, naming the host and not the password
        for write in (a.set_state("hello", "running"), b.put_endpoint(endpoint("new")),
                      a.delete_service("db")):
            started = time.perf_counter()
            with pytest.raises(RegistryUnavailable) as info:
                await write
            elapsed = time.perf_counter() - started
            assert elapsed < 5, elapsed
            assert info.value.kind == "unavailable"
            assert f"127.0.0.1:{own_postgres.port}" in info.value.reason
            assert own_postgres.password not in info.value.reason
        print(f"\nwrite with the server down failed in {elapsed * 1000:.0f} ms: "
              f"{info.value.reason}")
        # back on the same port and data dir: both converge on what is written next
        await asyncio.to_thread(own_postgres.start)
        record = await a.set_state("hello", "running")  # the first write succeeds
        assert await b.wait_version(record.version, 10)
        assert b.get_endpoint("hello").state == "running" and a.version == b.version
        for _ in range(100):
            if a.connected and b.connected:
                break
            await asyncio.sleep(0.1)
        assert a.connected and b.connected
        last = await b.put_endpoint(endpoint("later"))
        assert await a.wait_version(last.version, 2)
        assert a.version == b.version == before + 2
    finally:
        await a.aclose()
        await b.aclose()


@async_test
async def test_a_hung_server_times_writes_out_and_reads_go_on(own_postgres):
    a = await open_registry(own_postgres.dsn(), connect_timeout=1.0)
    await a.put_endpoint(endpoint())
    frozen = [own_postgres.proc.pid] + children(own_postgres.proc.pid)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        with pytest.raises(RegistryUnavailable) as info:
            await a.set_state("hello", "running")
        elapsed = time.perf_counter() - started
        print(f"\nwrite to a frozen server gave up after {elapsed:.1f} s")
        assert elapsed < 5 and "timed out" in info.value.reason
        assert a.get_endpoint("hello").state == "created"
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert (await a.set_state("hello", "running")).state == "running"
                break
            except RegistryUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
    finally:
        await a.aclose()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@async_test
async def test_the_periodic_check_catches_a_change_without_a_notice(dsn):
    b = await open_registry(dsn, resync_interval=0.3)
    try:
        await query(dsn, "UPDATE meta SET version = version + 1")  # no NOTIFY
        assert await b.wait_version(1, 3)
        assert b.last_sync is not None and time.time() - b.last_sync < 1
    finally:
        await b.aclose()


# -- migrations --------------------------------------------------------------------------------

@async_test
async def test_concurrent_opens_migrate_once(dsn):
    registries = await asyncio.gather(*[open_registry(dsn) for _ in range(4)])
    try:
        rows = await query(dsn, "SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
        await registries[0].put_endpoint(endpoint())
        for registry in registries:
            assert await registry.wait_version(1, 2)
    finally:
        for registry in registries:
            await registry.aclose()


@async_test
async def test_migrations_run_in_order_and_keep_data(dsn):
    registry = await open_registry(dsn)
    await registry.put_endpoint(endpoint())
    await registry.aclose()
    newer = MIGRATIONS + [("ALTER TABLE endpoints ADD COLUMN note text; "
                           "UPDATE endpoints SET note = 'migrated'")]
    registry = await open_registry(dsn, migrations=newer)
    try:
        assert registry.get_endpoint("hello").source == "fn x() {}"
        assert (await query(dsn, "SELECT note FROM endpoints"))[0][0] == "migrated"
        assert (await query(dsn, "SELECT max(version) FROM schema_migrations"))[0][0] == len(
            newer)
    finally:
        await registry.aclose()


@async_test
async def test_a_schema_from_a_newer_edgebook_is_refused(dsn):
    registry = await open_registry(dsn)
    await registry.aclose()
    await query(dsn, "INSERT INTO schema_migrations (version) VALUES ($1)", len(MIGRATIONS) + 5)
    with pytest.raises(RegistryError) as info:
        await open_registry(dsn)
    assert info.value.kind == "schema" and "newer" in info.value.reason


@async_test
async def test_a_failed_migration_leaves_the_old_schema(dsn):
    registry = await open_registry(dsn)
    await registry.aclose()
    with pytest.raises(RegistryError):
        await open_registry(dsn, migrations=MIGRATIONS + [("CREATE TABLE x (a int); "
                                                           "SELECT * FROM nope")])
    assert (await query(dsn, "SELECT max(version) FROM schema_migrations"))[0][0] == len(
        MIGRATIONS)
    assert (await query(dsn, "SELECT to_regclass('x') IS NULL"))[0][0]


@async_test
async def test_an_unreachable_server_is_unavailable_and_names_the_host():
    dsn = "postgresql://edgebook:s3cret@127.0.0.1:1/postgres"
    started = time.perf_counter()
    with pytest.raises(RegistryUnavailable) as info:
        await PostgresRegistry.open(dsn, connect_timeout=2)
    assert time.perf_counter() - started < 5
    assert "127.0.0.1:1" in info.value.reason and "s3cret" not in info.value.reason
    assert describe_target(dsn) == "127.0.0.1:1/postgres"


# -- the build queue ---------------------------------------------------------------------------

REQUEST = {"name": "hello", "source": "fn x() {}", "deps": [], "profile": "dev"}


@async_test
async def test_claims_go_oldest_first_and_never_twice(dsn):
    queue = await PostgresBuildQueue.open(dsn, connect_timeout=10)
    other = await PostgresBuildQueue.open(dsn, connect_timeout=10)
    try:
        ids = [await queue.enqueue("hello", n, f"key{n}", REQUEST) for n in range(1, 21)]
        claimed = await asyncio.gather(*[q.claim(f"builder-{i}") for i in range(20)
                                         for q in (queue, other)])
        jobs = [job for job in claimed if job is not None]
        assert sorted(job.id for job in jobs) == ids  # each exactly once
        assert all(job.attempts == 1 and job.request == REQUEST for job in jobs)
        assert await queue.claim("late") is None
        first = min(jobs, key=lambda job: job.id)
        assert (first.endpoint, first.revision, first.key) == ("hello", 1, "key1")
        rows = await query(dsn, "SELECT count(*) FROM build_jobs WHERE state = 'running'")
        assert rows[0][0] == 20
    finally:
        await queue.aclose()
        await other.aclose()


@async_test
async def test_a_silent_builder_loses_its_job_and_a_job_that_keeps_failing_fails(dsn):
    queue = await PostgresBuildQueue.open(dsn, connect_timeout=10, stale_after=0.5,
                                          max_attempts=2)
    try:
        job_id = await queue.enqueue("hello", 1, "k", REQUEST)
        job = await queue.claim("dead-builder")
        assert job.id == job_id and await queue.claim("b2") is None
        assert await queue.heartbeat(job_id, "dead-builder")
        await asyncio.sleep(0.7)
        again = await queue.claim("b2")
        assert again.id == job_id and again.attempts == 2
        assert not await queue.heartbeat(job_id, "dead-builder")  # not its job any more
        assert await queue.heartbeat(job_id, "b2")
        await asyncio.sleep(0.7)  # b2 dies too: two attempts is the limit
        assert await queue.claim("b3") is None
        row = await queue.get(job_id)
        assert row["state"] == "failed" and "stopped responding" in row["result"]["reason"]
        assert not await queue.complete(job_id, {"ok": True})  # too late
    finally:
        await queue.aclose()


@async_test
async def test_wait_relays_progress_and_returns_the_result_and_dedup_by_key(dsn):
    queue = await PostgresBuildQueue.open(dsn, connect_timeout=10)
    builder = await PostgresBuildQueue.open(dsn, connect_timeout=10, poll_interval=0.2)
    try:
        assert await queue.find_done("key-a") is None
        job_id = await queue.enqueue("hello", 1, "key-a", REQUEST)
        events = []

        async def build():
            assert await builder.next_job_signal(2)
            job = await builder.claim("builder-1")
            assert job.id == job_id
            await asyncio.sleep(0.2)  # the waiter is listening by now
            await builder.progress(job_id, {"phase": "compiling", "line": "x" * 20000})
            await builder.progress(job_id + 1000, {"phase": "someone else's"})
            await builder.progress(job_id, {"phase": "linking"})
            await asyncio.sleep(0.1)
            result = {"ok": True, "status": "ok", "artifact": "ab" * 32,
                      "content_hash": "h", "diagnostics": [], "duration": 1.5}
            assert await builder.complete(job_id, result)
            return result

        started = time.perf_counter()
        result, waited = await asyncio.gather(build(), queue.wait(job_id, 10, events.append))
        assert waited == result
        print(f"\nenqueue to result through wait(): {(time.perf_counter() - started) * 1000:.0f}"
              " ms (0.3 s of it the fake build)")
        assert [e["phase"] for e in events] == ["compiling", "linking"]
        assert len(events[0]["line"]) < 8000
        # a job finished before anyone waits is not missed
        assert await queue.wait(job_id, 1) == result
        # a later build of the same key reuses the result; a failed one is not reused
        assert await queue.find_done("key-a") == result
        failed = await queue.enqueue("hello", 2, "key-b", REQUEST)
        await builder.claim("builder-1")
        await builder.complete(failed, {"ok": False, "status": "failed", "reason": "E0425"})
        assert (await queue.wait(failed, 1))["reason"] == "E0425"
        assert await queue.find_done("key-b") is None
        # cancelling a queued job finishes it for its waiter
        cancelled = await queue.enqueue("hello", 3, "key-c", REQUEST)
        waiting = asyncio.ensure_future(queue.wait(cancelled, 5))
        await asyncio.sleep(0.2)
        assert await queue.cancel(cancelled)
        assert (await waiting)["status"] == "cancelled"
        with pytest.raises(TimeoutError):
            await queue.wait(await queue.enqueue("hello", 4, "key-d", REQUEST), 0.3)
    finally:
        await queue.aclose()
        await builder.aclose()


@async_test
async def test_a_builder_wakes_on_enqueue(dsn):
    queue = await PostgresBuildQueue.open(dsn, connect_timeout=10)
    builder = await PostgresBuildQueue.open(dsn, connect_timeout=10)
    try:
        assert await builder.claim("b") is None
        assert await builder.next_job_signal(0.1)  # the first call: check once anyway
        assert not await builder.next_job_signal(0.2)
        waiter = asyncio.ensure_future(builder.next_job_signal(5))
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        await queue.enqueue("hello", 1, "k", REQUEST)
        assert await waiter
        print(f"\nenqueue to builder wake-up: {(time.perf_counter() - started) * 1000:.1f} ms")
        assert (await builder.claim("b")).key == "k"
    finally:
        await queue.aclose()
        await builder.aclose()


def test_progress_payloads_stay_under_the_notify_limit():
    small = progress_payload(1, {"phase": "x"})
    assert json.loads(small) == {"job": 1, "event": {"phase": "x"}}
    big = progress_payload(7, {"log": "y" * 100_000 + "THE END", "lines": ["z" * 500] * 500})
    assert len(big.encode()) <= MAX_PAYLOAD
    event = json.loads(big)["event"]
    assert event["log"].endswith("THE END") and "characters cut" in event["log"]
    huge = progress_payload(7, {f"k{i}": i for i in range(5000)})
    assert len(huge.encode()) <= MAX_PAYLOAD and json.loads(huge)["job"] == 7


class _SlowBuilder:
    """A build that runs until it is cancelled (fault injection: a long cargo run)."""

    def __init__(self):
        self.started = asyncio.Event()
        self.cancelled: list[str] = []
        self._stop = asyncio.Event()

    async def build(self, request, on_progress=None):
        from edgebook.build.builder import BuildResult
        self.started.set()
        await asyncio.wait_for(self._stop.wait(), 60)
        return BuildResult(ok=False, status="cancelled", profile=request.profile,
                           name=request.name)

    def cancel(self, name: str) -> bool:
        self.cancelled.append(name)
        self._stop.set()
        return True


@async_test
async def test_cancelling_a_claimed_job_stops_its_build_on_the_builder(dsn, tmp_path):
    from edgebook.artifacts import ArtifactCache, LocalArtifactStore
    from edgebook.gateway.cluster import BuilderLoop
    queue = await PostgresBuildQueue.open(dsn, connect_timeout=10)
    builder = _SlowBuilder()
    loop = BuilderLoop(queue, builder, ArtifactCache(LocalArtifactStore(str(tmp_path / "s")),
                                                     str(tmp_path / "c")),
                       poll=0.2, heartbeat=0.2)
    loop.start()
    try:
        job = await queue.enqueue("slow", None, "k" * 64, {"name": "slow", "source": "x",
                                                           "deps": [], "profile": "dev"})
        await asyncio.wait_for(builder.started.wait(), 10)
        assert (await queue.get(job))["state"] == "running"
        started = time.monotonic()
        assert await queue.cancel(job, "cancelled by the user")
        while not builder.cancelled:
            assert time.monotonic() - started < 10, "the builder kept building"
            await asyncio.sleep(0.05)
        assert builder.cancelled == ["slow"]
        row = await queue.get(job)
        assert row["state"] == "cancelled" and row["result"]["reason"] == "cancelled by the user"
    finally:
        await loop.stop()
        await queue.aclose()


@async_test
async def test_cancel_open_cancels_an_endpoints_unfinished_jobs_only(dsn):
    queue = await PostgresBuildQueue.open(dsn, connect_timeout=10)
    try:
        request = {"name": "e", "source": "x", "deps": [], "profile": "dev"}
        first = await queue.enqueue("e", None, "a" * 64, request)
        second = await queue.enqueue("e", None, "b" * 64, request)
        other = await queue.enqueue("f", None, "c" * 64, {**request, "name": "f"})
        claimed = await queue.claim("builder-1")
        assert claimed.id == first
        assert await queue.cancel_open("e", "cancelled by the user") == [first, second]
        assert await queue.cancel_open("e") == []
        assert (await queue.get(first))["state"] == "cancelled"
        assert (await queue.get(other))["state"] == "queued"
        assert await queue.heartbeat(first, "builder-1") is False  # the builder stops
    finally:
        await queue.aclose()


@async_test
async def test_a_write_announced_while_a_reload_reads_an_older_snapshot_is_not_lost(dsn):
    """Fault injection: B's reload reads version n; before it installs it, A commits n + 1
    and B hears of it. B must reload again rather than settle on n (before the fix it
    waited for the 30 s safety check)."""
    a = await open_registry(dsn)
    b = await open_registry(dsn, resync_interval=300)
    race = {"armed": True}
    try:
        await a.put_endpoint(endpoint("first"))
        assert await b.wait_version(a.version, 2.0)

        async def racing_sync(*, conn=None):
            async with b._sync_lock:
                async with b._acquire() as pooled:
                    snapshot = await pgregistry.load_snapshot(pooled)
                if race.pop("armed", False):
                    await a.put_endpoint(endpoint("second"))  # commits n + 1 now
                    await asyncio.sleep(0.3)  # B's feed hears of it meanwhile
                return b._install(snapshot)

        b._sync = racing_sync
        third = await a.put_endpoint(endpoint("third"))
        while a.version < third.version + 1:  # B's reload has made A write "second"
            await asyncio.sleep(0.01)
        assert await b.wait_version(a.version, 3.0), (b.version, a.version)
        assert {e.name for e in b.endpoints()} == {"first", "second", "third"}
    finally:
        await a.aclose()
        await b.aclose()
