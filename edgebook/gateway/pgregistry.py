"""The registry in PostgreSQL, shared by several gateways, with a change feed.

``PostgresRegistry`` implements ``Registry`` on asyncpg. Each gateway keeps the whole
registry in memory (a *mirror*) and serves every read from it: reads are synchronous, never
touch the network and keep answering from the last snapshot while the database is down.
Writes are coroutines that run one transaction each:

* the transaction first moves ``meta.version`` forward by one (the row lock on ``meta``
  serializes writers, so versions commit in order), stamps the rows it writes with that
  version, records it in ``changes`` and sends ``pg_notify('edgebook_registry', version)``;
* after the commit the writer reloads its mirror, so a gateway reads its own writes at once.

A dedicated connection LISTENs on ``edgebook_registry``. A notification newer than the
mirror makes it reload one consistent snapshot (a REPEATABLE READ read-only transaction) and
call ``on_change(version)``. The mirror only moves forward, so late or duplicated
notifications do nothing. When the listening connection dies it reconnects with backoff and
always resyncs (a notification may have been missed meanwhile); every ``resync_interval``
seconds it also checks ``meta.version`` over that connection (a safety net and a keepalive).

A write that cannot reach the database raises ``RegistryUnavailable``: at once when the
connection is refused, after ``write_timeout`` seconds (plus at most as long again to drop
the stuck connection) when the server does not answer. Its reason names the host, never the
password. A pooled connection found dead before anything was sent through it is replaced
once, so the first write after a server restart does not fail.

The schema is versioned (``schema_migrations``); ``MIGRATIONS`` run in order in one
transaction under ``pg_advisory_xact_lock``, so gateways starting together migrate once. A
schema newer than this code is refused. The build queue (buildqueue.py) lives in the same
database and schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import inspect
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..services.secrets import redact
from .registry import (EndpointRecord, NotFoundError, Registry, RegistryError,
                       RegistryUnavailable, RevisionRecord, ServiceRecord, check_desired,
                       check_expected, check_state)
from .tasks import stray_cancel, watch_task

log = logging.getLogger(__name__)

#: The channel every registry write notifies, with the new version as payload.
CHANNEL = "edgebook_registry"
#: The application_name of the listening connection (pg_stat_activity shows it).
FEED_APPLICATION = "edgebook-registry-feed"
#: Key of the advisory lock that serializes migrations across gateways.
MIGRATION_LOCK = 0x6564676562_6F6F6B % (2 ** 63)  # "edgebook"
#: Delays between attempts to reconnect the listening connection, in seconds.
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
#: How many rows of ``changes`` to keep.
CHANGES_KEPT = 10_000

# Each entry moves the schema from version i to i + 1. Never edit a released entry; append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (
        id integer PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL
    );
    INSERT INTO meta (id, version) VALUES (1, 0);
    CREATE TABLE endpoints (
        name text PRIMARY KEY,
        method text NOT NULL,
        path text NOT NULL,
        domain text,
        source text NOT NULL DEFAULT '',
        deps jsonb NOT NULL DEFAULT '[]',
        options jsonb NOT NULL DEFAULT '{}',
        origin jsonb,
        desired text NOT NULL DEFAULT 'running',
        state text NOT NULL DEFAULT 'created',
        reason text,
        stderr_tail text,
        live_revision integer,
        created double precision NOT NULL,
        updated double precision NOT NULL,
        version bigint NOT NULL
    );
    CREATE TABLE revisions (
        endpoint text NOT NULL REFERENCES endpoints(name) ON DELETE CASCADE,
        number integer NOT NULL,
        content_hash text,
        "binary" text,
        profile text NOT NULL,
        build_status text NOT NULL,
        diagnostics jsonb NOT NULL DEFAULT '[]',
        source text,
        deps jsonb NOT NULL DEFAULT '[]',
        artifact text,
        created double precision NOT NULL,
        version bigint NOT NULL,
        PRIMARY KEY (endpoint, number)
    );
    CREATE TABLE services (
        name text PRIMARY KEY,
        kind text NOT NULL,
        config jsonb NOT NULL DEFAULT '{}',
        created double precision NOT NULL,
        updated double precision NOT NULL,
        version bigint NOT NULL
    );
    CREATE TABLE bindings (
        endpoint text NOT NULL REFERENCES endpoints(name) ON DELETE CASCADE,
        service text NOT NULL REFERENCES services(name) ON DELETE RESTRICT,
        PRIMARY KEY (endpoint, service)
    );
    CREATE INDEX bindings_by_service ON bindings (service);
    CREATE TABLE changes (
        version bigint PRIMARY KEY,
        kind text NOT NULL,
        name text NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
    );
    """,
    """
    CREATE TABLE build_jobs (
        id bigserial PRIMARY KEY,
        endpoint text NOT NULL,
        revision integer,
        key text NOT NULL,
        request jsonb NOT NULL,
        state text NOT NULL DEFAULT 'queued'
            CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        attempts integer NOT NULL DEFAULT 0,
        claimed_by text,
        claimed_at timestamptz,
        heartbeat_at timestamptz,
        result jsonb,
        created timestamptz NOT NULL DEFAULT now(),
        finished timestamptz
    );
    CREATE INDEX build_jobs_open ON build_jobs (id) WHERE state IN ('queued', 'running');
    CREATE INDEX build_jobs_done_by_key ON build_jobs (key, finished) WHERE state = 'done';
    """,
    """
    CREATE TABLE gateways (
        id text PRIMARY KEY,
        role text NOT NULL,
        url text,
        admin_url text,
        served_version bigint NOT NULL DEFAULT 0,
        serving jsonb NOT NULL DEFAULT '{}',
        ready boolean NOT NULL DEFAULT false,
        reason text,
        started timestamptz NOT NULL DEFAULT now(),
        seen timestamptz NOT NULL DEFAULT now()
    );
    """,
]


# -- connections and errors -------------------------------------------------------------------

def describe_target(dsn: str) -> str:
    """``host:port/database`` of a DSN: what messages name (never the password)."""
    try:
        parts = urllib.parse.urlsplit(dsn)
        if parts.scheme in ("postgres", "postgresql") and parts.hostname:
            port = f":{parts.port}" if parts.port else ""
            database = parts.path.lstrip("/")
            return f"{parts.hostname}{port}" + (f"/{database}" if database else "")
    except ValueError:
        pass
    return "the configured PostgreSQL server"


def _passwords(dsn: str) -> list[str]:
    """The DSN's password as written and as the server sees it (percent-decoded)."""
    try:
        written = urllib.parse.urlsplit(dsn).password
    except ValueError:
        return []
    return [written, urllib.parse.unquote(written)] if written else []


def is_unreachable(exc: BaseException) -> bool:
    """Whether the error means the server cannot be reached (rather than refused the SQL)."""
    import asyncpg

    return isinstance(exc, (
        OSError, TimeoutError, ConnectionError,
        asyncpg.InterfaceError,  # the connection is closed or was lost mid-call
        asyncpg.PostgresConnectionError,  # class 08: connection exceptions
        asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError, asyncpg.TooManyConnectionsError))


def unavailable(dsn: str, exc: BaseException) -> RegistryUnavailable:
    text = redact(str(exc) or type(exc).__name__, _passwords(dsn))
    if isinstance(exc, TimeoutError):
        text = "timed out"
    return RegistryUnavailable(
        f"the registry database at {describe_target(dsn)} cannot be reached ({text}); "
        "nothing was changed, try again when it is back")


def _json_encode(value: Any) -> str:
    return json.dumps(value)


async def init_connection(conn) -> None:
    """jsonb columns in and out as Python values."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_json_encode, decoder=json.loads,
                                  schema="pg_catalog")


async def connect(dsn: str, timeout: float, application_name: str = "edgebook-registry"):
    """One connection (JSON codecs set), bounded by ``timeout``."""
    import asyncpg

    conn = await asyncio.wait_for(
        asyncpg.connect(dsn, timeout=timeout, command_timeout=timeout,
                        server_settings={"application_name": application_name}),
        timeout + 1)
    try:
        await init_connection(conn)
    except BaseException:
        conn.terminate()
        raise
    return conn


async def create_pool(dsn: str, *, timeout: float, min_size: int = 1, max_size: int = 4):
    import asyncpg

    return await asyncio.wait_for(asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, timeout=timeout,
        command_timeout=timeout, init=init_connection,
        server_settings={"application_name": "edgebook-registry"}), timeout + 1)


async def schema_version(conn) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")


async def migrate(conn, migrations: Sequence[str] = MIGRATIONS, *, target: str = "") -> int:
    """Bring the schema to ``len(migrations)`` in one transaction under an advisory lock (so
    concurrent callers migrate once); returns the number of migrations applied here."""
    known = len(migrations)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                                  version integer PRIMARY KEY,
                                  applied_at timestamptz NOT NULL DEFAULT now())""")
        current = await schema_version(conn)
        if current > known:
            raise RegistryError(
                f"the registry at {target or 'the database'} has schema version {current}, "
                f"newer than this edgebook understands ({known}); upgrade edgebook",
                kind="schema")
        for version in range(current, known):
            log.info("migrating the registry at %s to schema version %d", target, version + 1)
            await conn.execute(migrations[version])
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)",
                               version + 1)
        return known - current


# -- records ----------------------------------------------------------------------------------

def _endpoint(row) -> EndpointRecord:
    return EndpointRecord(
        name=row["name"], method=row["method"], path=row["path"],
        domain=row["domain"], source=row["source"], deps=list(row["deps"]),
        options=dict(row["options"]), origin=row["origin"], desired=row["desired"],
        state=row["state"], reason=row["reason"], stderr_tail=row["stderr_tail"],
        live_revision=row["live_revision"], created=row["created"], updated=row["updated"],
        version=row["version"])


def _revision(row) -> RevisionRecord:
    return RevisionRecord(
        endpoint=row["endpoint"], number=row["number"], content_hash=row["content_hash"],
        binary=row["binary"], profile=row["profile"], build_status=row["build_status"],
        diagnostics=list(row["diagnostics"]), created=row["created"], source=row["source"],
        deps=list(row["deps"]), artifact=row["artifact"])


def _service(row) -> ServiceRecord:
    return ServiceRecord(name=row["name"], kind=row["kind"], config=dict(row["config"]),
                         created=row["created"], updated=row["updated"])


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The whole registry at one version. Never mutated: a newer one replaces it."""

    version: int
    endpoints: dict[str, EndpointRecord]
    revisions: dict[str, list[RevisionRecord]]  # newest first
    services: dict[str, ServiceRecord]
    bindings: dict[str, list[str]]  # endpoint -> sorted services
    bound: dict[str, list[str]]  # service -> sorted endpoints


EMPTY = Snapshot(0, {}, {}, {}, {}, {})


async def load_snapshot(conn) -> Snapshot:
    """Every table at one moment: one REPEATABLE READ read-only transaction."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        version = await conn.fetchval("SELECT version FROM meta WHERE id = 1")
        endpoint_rows = await conn.fetch("SELECT * FROM endpoints ORDER BY name")
        revision_rows = await conn.fetch(
            "SELECT * FROM revisions ORDER BY endpoint, number DESC")
        service_rows = await conn.fetch("SELECT * FROM services ORDER BY name")
        binding_rows = await conn.fetch(
            "SELECT endpoint, service FROM bindings ORDER BY endpoint, service")
    revisions: dict[str, list[RevisionRecord]] = {}
    for row in revision_rows:
        revisions.setdefault(row["endpoint"], []).append(_revision(row))
    bindings: dict[str, list[str]] = {}
    bound: dict[str, list[str]] = {}
    for row in binding_rows:
        bindings.setdefault(row["endpoint"], []).append(row["service"])
        bound.setdefault(row["service"], []).append(row["endpoint"])
    for names in bound.values():
        names.sort()
    return Snapshot(version=version,
                    endpoints={row["name"]: _endpoint(row) for row in endpoint_rows},
                    revisions=revisions,
                    services={row["name"]: _service(row) for row in service_rows},
                    bindings=bindings, bound=bound)


OnChange = Callable[[int], Any] | Callable[[int], Awaitable[Any]]


class PostgresRegistry(Registry):
    """The registry in PostgreSQL; open it with ``await PostgresRegistry.open(dsn)``.

    ``version`` is the mirror's version, ``connected`` whether the change feed is up,
    ``last_sync`` the wall-clock time of the last successful snapshot check,
    ``listener_pid`` the backend pid of the listening connection (or None).
    ``on_change(version)`` (a function or a coroutine function) is called, one call at a time
    and with growing versions, whenever the mirror moves forward, by this gateway's own
    writes too; calls coalesce when changes come faster than it returns.
    """

    def __init__(self, dsn: str, *, on_change: OnChange | None = None,
                 connect_timeout: float = 5.0, write_timeout: float | None = None,
                 resync_interval: float = 30.0, pool_size: int = 4,
                 migrations: Sequence[str] | None = None):
        self.dsn = dsn
        self.target = describe_target(dsn)
        self.on_change = on_change
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout if write_timeout is not None else connect_timeout
        self.resync_interval = resync_interval
        self.pool_size = pool_size
        self.migrations = list(MIGRATIONS if migrations is None else migrations)
        self.pool = None
        self.connected = False
        self.last_sync: float | None = None
        self.reconnects = 0  # how many times the change feed came back after a loss
        self._snap = EMPTY
        self._sync_lock = asyncio.Lock()
        self._advanced = asyncio.Event()
        self._wanted = 0  # the newest version a notification announced
        self._kick = asyncio.Event()
        self._changed = asyncio.Event()
        self._announced = 0
        self._listen_conn = None
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    @classmethod
    async def open(cls, dsn: str, *, on_change: OnChange | None = None,
                   connect_timeout: float = 5.0, **options) -> PostgresRegistry:
        """Connect, migrate, load the snapshot and start following the change feed."""
        self = cls(dsn, on_change=on_change, connect_timeout=connect_timeout, **options)
        try:
            self.pool = await create_pool(dsn, timeout=connect_timeout,
                                          max_size=max(1, self.pool_size))
            async with self._acquire() as conn:
                await migrate(conn, self.migrations, target=self.target)
            await self._sync()
        except RegistryError:
            await self.aclose()
            raise
        except Exception as exc:
            await self.aclose()
            if is_unreachable(exc):
                raise unavailable(dsn, exc) from None
            raise RegistryError(f"cannot open the registry at {self.target}: {exc}") from exc
        self._announced = self._snap.version
        listening = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._listen_loop(listening)),
                       asyncio.create_task(self._sync_loop()),
                       asyncio.create_task(self._change_loop())]
        for task, what in zip(self._tasks, ("the registry's change feed",
                                            "the registry's resync", "registry change calls")):
            watch_task(task, what, lambda: self._closed)
        # Wait (briefly) for LISTEN so that no write after open() goes unnoticed; a feed that
        # cannot start now keeps trying in the background.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(listening), connect_timeout)
        return self

    # -- state ----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._snap.version

    @property
    def listener_pid(self) -> int | None:
        conn = self._listen_conn
        return conn.get_server_pid() if conn is not None and not conn.is_closed() else None

    @property
    def schema_version(self) -> int:
        return len(self.migrations)

    async def wait_version(self, version: int, timeout: float = 5.0) -> bool:
        """Wait until the mirror is at ``version`` or newer; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._snap.version < version:
            event = self._advanced
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return self._snap.version >= version
        return True

    async def resync(self) -> int:
        """Check the database's version now and reload if it moved; returns the version."""
        try:
            await self._sync()
        except RegistryError:
            raise
        except Exception as exc:
            if is_unreachable(exc):
                raise unavailable(self.dsn, exc) from None
            raise RegistryError(f"registry error on {self.target}: {exc}") from exc
        return self.version

    # -- following the feed ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _acquire(self):
        if self.pool is None:
            raise RegistryUnavailable(f"the registry at {self.target} is closed")
        async with self.pool.acquire(timeout=self.connect_timeout) as conn:
            yield conn

    async def _sync(self, *, conn=None) -> bool:
        """Reload the snapshot if the database is ahead of the mirror; True if it moved."""
        async with self._sync_lock:
            if conn is not None:
                snapshot = await load_snapshot(conn)
            else:
                async with self._acquire() as pooled:
                    snapshot = await load_snapshot(pooled)
            self.last_sync = time.time()
            return self._install(snapshot)

    def _install(self, snapshot: Snapshot) -> bool:
        if snapshot.version <= self._snap.version:
            return False
        self._snap = snapshot
        self._wanted = max(self._wanted, snapshot.version)
        event, self._advanced = self._advanced, asyncio.Event()
        event.set()
        self._changed.set()
        return True

    def _on_notify(self, conn, pid, channel, payload) -> None:
        try:
            version = int(payload)
        except ValueError:
            version = self._snap.version + 1  # not ours to parse: check anyway
        if version > self._snap.version and version > self._wanted:
            self._wanted = version
            self._kick.set()

    async def _sync_loop(self) -> None:
        """Reload until the mirror holds the newest version a notification announced.

        A notification can arrive while a reload is reading an older snapshot (the write
        committed just after the read began): the loop then reloads again. NOTIFY is sent
        at commit, so an announced version becomes visible; only if several reloads in a
        row see nothing newer (the database was replaced by an older copy) is the
        announcement dropped, with a warning."""
        while not self._closed:
            await self._kick.wait()
            self._kick.clear()
            stalls = 0
            while self._wanted > self._snap.version and not self._closed:
                try:
                    moved = await self._sync()
                except asyncio.CancelledError:
                    if not stray_cancel():
                        raise
                    await asyncio.sleep(0.5)
                    continue
                except Exception:
                    log.warning("registry resync from %s failed; retrying", self.target,
                                exc_info=log.isEnabledFor(logging.DEBUG))
                    await asyncio.sleep(0.5)
                    continue
                if moved:
                    stalls = 0
                    continue
                stalls += 1
                if stalls >= 5:
                    log.warning("registry %s announced version %d but shows %d; going on "
                                "with %d", self.target, self._wanted, self._snap.version,
                                self._snap.version)
                    self._wanted = self._snap.version
                    break
                await asyncio.sleep(0.05 * stalls)

    async def _listen_loop(self, listening: asyncio.Future) -> None:
        attempt = 0
        while not self._closed:
            conn = None
            try:
                conn = await connect(self.dsn, self.connect_timeout, FEED_APPLICATION)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self._listen_conn = conn
                # Always resync: a change may have committed while we were not listening.
                await self._sync(conn=conn)
                self.connected = True
                if attempt:
                    self.reconnects += 1
                    log.info("registry change feed from %s is back (version %d)",
                             self.target, self.version)
                attempt = 0
                if not listening.done():
                    listening.set_result(True)
                await self._watch(conn, lost)
            except asyncio.CancelledError:
                if not stray_cancel():
                    raise
                log.warning("registry change feed from %s interrupted; reconnecting",
                            self.target)
            except Exception as exc:
                if self.connected or attempt == 0:
                    log.warning("registry change feed from %s lost: %s", self.target,
                                unavailable(self.dsn, exc).reason if is_unreachable(exc)
                                else exc)
            finally:
                self.connected = False
                self._listen_conn = None
                if conn is not None:
                    conn.terminate()
            if self._closed:
                break
            await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1

    async def _watch(self, conn, lost: asyncio.Event) -> None:
        """Return when the listening connection is gone; check the version now and then."""
        next_check = time.monotonic() + self.resync_interval
        while not self._closed:
            timeout = min(1.0, max(0.0, next_check - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout)
            if lost.is_set() or conn.is_closed():
                return
            if time.monotonic() >= next_check:
                # The safety net and the keepalive: a query on the listening connection.
                version = await conn.fetchval("SELECT version FROM meta WHERE id = 1",
                                              timeout=self.connect_timeout)
                self.last_sync = time.time()
                if version > self._snap.version:
                    self._wanted = max(self._wanted, version)
                    self._kick.set()
                next_check = time.monotonic() + self.resync_interval

    async def _change_loop(self) -> None:
        """Call on_change, one call at a time, with the newest version."""
        while not self._closed:
            await self._changed.wait()
            self._changed.clear()
            version = self._snap.version
            if version <= self._announced or self.on_change is None:
                self._announced = max(self._announced, version)
                continue
            self._announced = version
            try:
                result = self.on_change(version)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                if not stray_cancel():
                    raise
                log.warning("registry on_change(%d) was interrupted", version)
            except Exception:
                log.exception("registry on_change(%d) failed", version)

    # -- writes ---------------------------------------------------------------------------

    async def _write(self, kind: str, name: str, work: Callable[[Any, int], Awaitable[Any]]):
        """Run ``work(conn, version)`` in one transaction that moves the registry to
        ``version``; then bring the mirror up to it."""
        import asyncpg

        try:
            async with asyncio.timeout(self.write_timeout):
                for attempt in (1, 2):
                    version = None
                    try:
                        async with self._acquire() as conn:
                            async with conn.transaction():
                                version = await conn.fetchval(
                                    "UPDATE meta SET version = version + 1 WHERE id = 1 "
                                    "RETURNING version")
                                result = await work(conn, version)
                                await conn.execute(
                                    "INSERT INTO changes (version, kind, name) "
                                    "VALUES ($1, $2, $3)", version, kind, name)
                                if version % 1000 == 0:
                                    await conn.execute(
                                        "DELETE FROM changes WHERE version <= $1",
                                        version - CHANGES_KEPT)
                                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL,
                                                   str(version))
                        break
                    except (asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError,
                            asyncpg.AdminShutdownError, ConnectionError):
                        # A pooled connection that died while idle (the server restarted):
                        # nothing was written through it yet, so one retry on a fresh one.
                        if attempt == 2 or version is not None:
                            raise
        except RegistryError:
            raise
        except (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError,
                asyncpg.SerializationError, asyncpg.DeadlockDetectedError) as exc:
            raise RegistryError(f"registry constraint failed: {exc}", kind="conflict") from None
        except Exception as exc:
            if is_unreachable(exc):
                raise unavailable(self.dsn, exc) from None
            raise RegistryError(f"registry error on {self.target}: {exc}") from exc
        # Read your own writes: the mirror catches up before the call returns. The write is
        # committed even if this fails; the change feed brings the mirror up later.
        if self._snap.version < version:
            try:
                await asyncio.wait_for(self._sync(), self.write_timeout)
            except Exception as exc:
                log.warning("registry mirror not refreshed after write %d: %s", version, exc)
        return result

    async def put_endpoint(self, record: EndpointRecord, *,
                           expected_version: int | None = None) -> EndpointRecord:
        check_desired(record.desired)
        now = time.time()

        async def work(conn, version):
            if expected_version is not None:
                current = await conn.fetchval(
                    "SELECT version FROM endpoints WHERE name = $1 FOR UPDATE", record.name)
                check_expected(record.name, current, expected_version)
            row = await conn.fetchrow(
                """INSERT INTO endpoints (name, method, path, domain, source, deps, options,
                       origin, desired, state, created, updated, version)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'created', $10, $10, $11)
                   ON CONFLICT (name) DO UPDATE SET method = excluded.method,
                       path = excluded.path, domain = excluded.domain,
                       source = excluded.source, deps = excluded.deps,
                       options = excluded.options, origin = excluded.origin,
                       desired = excluded.desired, updated = excluded.updated,
                       version = excluded.version
                   RETURNING *""",
                record.name, record.method, record.path, record.domain, record.source,
                list(record.deps), dict(record.options), record.origin, record.desired,
                now, version)
            return _endpoint(row)

        return await self._write("endpoint", record.name, work)

    async def _update(self, name: str, sets: str, params: tuple) -> EndpointRecord:
        async def work(conn, version):
            n = len(params)
            row = await conn.fetchrow(
                f"UPDATE endpoints SET {sets}, updated = ${n + 1}, version = ${n + 2} "
                f"WHERE name = ${n + 3} RETURNING *", *params, time.time(), version, name)
            if row is None:
                raise NotFoundError(f"no endpoint named {name!r}")
            return _endpoint(row)

        return await self._write("endpoint", name, work)

    async def set_state(self, name: str, state: str, reason: str | None = None,
                        stderr_tail: str | None = None) -> EndpointRecord:
        check_state(state)
        return await self._update(name, "state = $1, reason = $2, stderr_tail = $3",
                                  (state, reason, stderr_tail))

    async def set_desired(self, name: str, desired: str) -> EndpointRecord:
        check_desired(desired)
        return await self._update(name, "desired = $1", (desired,))

    async def set_live_revision(self, name: str, number: int | None) -> EndpointRecord:
        return await self._update(name, "live_revision = $1", (number,))

    async def delete_endpoint(self, name: str) -> None:
        async def work(conn, version):
            if await conn.fetchval("DELETE FROM endpoints WHERE name = $1 RETURNING 1",
                                   name) is None:
                raise NotFoundError(f"no endpoint named {name!r}")

        await self._write("endpoint", name, work)

    async def prune_revisions(self, endpoint: str, keep: Sequence[int]) -> list[int]:
        async def work(conn, version):
            rows = await conn.fetch(
                """DELETE FROM revisions WHERE endpoint = $1 AND NOT (number = ANY($2::int[]))
                   AND number IS DISTINCT FROM (SELECT live_revision FROM endpoints
                                                WHERE name = $1)
                   RETURNING number""", endpoint, list(keep))
            return sorted(row["number"] for row in rows)

        return await self._write("revisions", endpoint, work)

    async def add_revision(self, endpoint: str, *, content_hash: str | None,
                           binary: str | None, profile: str, build_status: str,
                           diagnostics: Sequence[Any] = (), source: str | None = None,
                           deps: Sequence[str] = (),
                           artifact: str | None = None) -> RevisionRecord:
        async def work(conn, version):
            if await conn.fetchval("SELECT 1 FROM endpoints WHERE name = $1 FOR UPDATE",
                                   endpoint) is None:
                raise NotFoundError(f"no endpoint named {endpoint!r}")
            row = await conn.fetchrow(
                """INSERT INTO revisions (endpoint, number, content_hash, "binary", profile,
                       build_status, diagnostics, source, deps, artifact, created, version)
                   SELECT $1, COALESCE(MAX(number), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9,
                          $10, $11
                   FROM revisions WHERE endpoint = $1
                   RETURNING *""",
                endpoint, content_hash, binary, profile, build_status, list(diagnostics),
                source, list(deps), artifact, time.time(), version)
            return _revision(row)

        return await self._write("revision", endpoint, work)

    async def update_revision(self, endpoint: str, number: int, *, build_status: str,
                              binary: str | None = None, artifact: str | None = None,
                              content_hash: str | None = None,
                              diagnostics: Sequence[Any] | None = None) -> RevisionRecord:
        async def work(conn, version):
            row = await conn.fetchrow(
                """UPDATE revisions SET build_status = $1, "binary" = COALESCE($2, "binary"),
                       artifact = COALESCE($3, artifact),
                       content_hash = COALESCE($4, content_hash),
                       diagnostics = COALESCE($5, diagnostics), version = $6
                   WHERE endpoint = $7 AND number = $8 RETURNING *""",
                build_status, binary, artifact, content_hash,
                list(diagnostics) if diagnostics is not None else None, version,
                endpoint, number)
            if row is None:
                raise NotFoundError(f"endpoint {endpoint!r} has no revision {number}")
            return _revision(row)

        return await self._write("revision", endpoint, work)

    async def put_service(self, record: ServiceRecord) -> ServiceRecord:
        now = time.time()

        async def work(conn, version):
            row = await conn.fetchrow(
                """INSERT INTO services (name, kind, config, created, updated, version)
                   VALUES ($1, $2, $3, $4, $4, $5)
                   ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,
                       config = excluded.config, updated = excluded.updated,
                       version = excluded.version
                   RETURNING *""",
                record.name, record.kind, dict(record.config), now, version)
            return _service(row)

        return await self._write("service", record.name, work)

    async def delete_service(self, name: str) -> None:
        async def work(conn, version):
            users = [r["endpoint"] for r in await conn.fetch(
                "SELECT endpoint FROM bindings WHERE service = $1 ORDER BY endpoint", name)]
            if users:
                raise RegistryError(f"service {name!r} is bound to endpoint(s) "
                                    f"{', '.join(users)}; unbind them first", kind="conflict")
            if await conn.fetchval("DELETE FROM services WHERE name = $1 RETURNING 1",
                                   name) is None:
                raise NotFoundError(f"no service named {name!r}")

        await self._write("service", name, work)

    async def set_bindings(self, endpoint: str, services: Sequence[str]) -> None:
        wanted = list(dict.fromkeys(services))

        async def work(conn, version):
            if await conn.fetchval("SELECT 1 FROM endpoints WHERE name = $1 FOR UPDATE",
                                   endpoint) is None:
                raise NotFoundError(f"no endpoint named {endpoint!r}")
            found = {r["name"] for r in await conn.fetch(
                "SELECT name FROM services WHERE name = ANY($1::text[]) FOR SHARE", wanted)}
            for service in wanted:
                if service not in found:
                    raise NotFoundError(f"no service named {service!r}")
            await conn.execute("DELETE FROM bindings WHERE endpoint = $1", endpoint)
            await conn.executemany("INSERT INTO bindings (endpoint, service) VALUES ($1, $2)",
                                   [(endpoint, s) for s in wanted])

        await self._write("bindings", endpoint, work)

    # -- reads: from the mirror -----------------------------------------------------------

    def endpoints(self) -> list[EndpointRecord]:
        return [copy.deepcopy(r) for r in self._snap.endpoints.values()]

    def find_endpoint(self, name: str) -> EndpointRecord | None:
        record = self._snap.endpoints.get(name)
        return copy.deepcopy(record) if record is not None else None

    def get_endpoint(self, name: str) -> EndpointRecord:
        record = self.find_endpoint(name)
        if record is None:
            raise NotFoundError(f"no endpoint named {name!r}")
        return record

    def revisions(self, endpoint: str) -> list[RevisionRecord]:
        return [copy.deepcopy(r) for r in self._snap.revisions.get(endpoint, ())]

    def get_revision(self, endpoint: str, number: int) -> RevisionRecord:
        for record in self._snap.revisions.get(endpoint, ()):
            if record.number == number:
                return copy.deepcopy(record)
        raise NotFoundError(f"endpoint {endpoint!r} has no revision {number}")

    def services(self) -> list[ServiceRecord]:
        return [copy.deepcopy(r) for r in self._snap.services.values()]

    def get_service(self, name: str) -> ServiceRecord:
        record = self._snap.services.get(name)
        if record is None:
            raise NotFoundError(f"no service named {name!r}")
        return copy.deepcopy(record)

    def bindings(self, endpoint: str) -> list[str]:
        return list(self._snap.bindings.get(endpoint, ()))

    def bound_endpoints(self, service: str) -> list[str]:
        return list(self._snap.bound.get(service, ()))

    def generation(self) -> int:
        return self._snap.version

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following and drop the connections at once (no waiting)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._listen_conn is not None:
            self._listen_conn.terminate()
            self._listen_conn = None
        if self.pool is not None:
            self.pool.terminate()
            self.pool = None
        self.connected = False

    async def aclose(self) -> None:
        """Stop following and close the connections."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        pool, self.pool = self.pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 2)
            except Exception:
                pool.terminate()
        self.connected = False
