"""The registry: endpoints, revisions, services and bindings, behind one interface.

``Registry`` is the interface the gateway talks to; ``SQLiteRegistry`` is the default
implementation (one file in the data dir, WAL mode). Calls are synchronous and fast (a local
SQLite transaction, well under a millisecond); the gateway calls them from its event loop.
Only the primary gateway process writes, so the only lock a call can meet is one held by an
outside tool; it waits at most ``busy_timeout`` seconds and then raises ``RegistryError``.

Reads are synchronous; writes are coroutines, so a backend that crosses the network
(``PostgresRegistry``, pgregistry.py) never blocks the event loop. Every write moves the
registry's version (``generation()``) forward by one and stamps the rows it wrote with it:
``EndpointRecord.version`` is what an admin client sends back as ``If-Match`` so that two
conflicting updates cannot silently overwrite each other.

Every failure of the store (locked database, full disk, corrupt file) raises
``RegistryError`` with a readable reason; the transaction is rolled back, so a failed write
leaves the registry as it was before the call. ``RegistryUnavailable`` says the store
cannot be reached at all (the admin API answers 503 ``registry_unavailable``).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..services.secrets import mask

log = logging.getLogger(__name__)

#: States a user can see for an endpoint.
STATES = ("created", "building", "build_failed", "starting", "running", "stopped",
          "crash_looping", "deploy_failed", "running_build_failed", "running_deploy_failed")
#: States in which a live revision serves: ``running``, and ``running`` while the latest
#: build (or the start of the revision it made) failed and the previous revision serves on.
SERVING_STATES = ("running", "running_build_failed", "running_deploy_failed")
#: States the user asks for.
DESIRED_STATES = ("running", "stopped")


class RegistryError(Exception):
    """The registry could not do what was asked; ``reason`` says why in plain words."""

    def __init__(self, reason: str, *, kind: str = "storage"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class RegistryUnavailable(RegistryError):
    """The store cannot be reached (a remote registry is down); reads keep answering from
    the last state seen, writes fail with this."""

    def __init__(self, reason: str):
        super().__init__(reason, kind="unavailable")


class NotFoundError(RegistryError):
    """No endpoint, revision or service has that name."""

    def __init__(self, reason: str):
        super().__init__(reason, kind="not_found")


def _now() -> float:
    return time.time()


@dataclasses.dataclass
class EndpointRecord:
    """One endpoint as stored: its route, its source and options, and its state."""

    name: str
    method: str
    path: str
    domain: str | None = None
    source: str = ""
    deps: list[str] = dataclasses.field(default_factory=list)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    origin: dict[str, Any] | None = None
    desired: str = "running"
    state: str = "created"
    reason: str | None = None
    stderr_tail: str | None = None
    live_revision: int | None = None
    created: float = 0.0
    updated: float = 0.0
    #: The registry version of the row's last write: the endpoint's ETag.
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RevisionRecord:
    """One build of one endpoint: the binary it produced (if any) and the build's outcome."""

    endpoint: str
    number: int
    content_hash: str | None
    binary: str | None
    profile: str
    build_status: str
    diagnostics: list[Any] = dataclasses.field(default_factory=list)
    created: float = 0.0
    #: The source and dependencies this revision was built from: what ``/source``, the
    #: OpenAPI export and a rebuild use while it is live (not the last submitted text).
    source: str | None = None
    deps: list[str] = dataclasses.field(default_factory=list)
    #: sha256 of the built binary: its name in the artifact store.
    artifact: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ServiceRecord:
    """A named service instance (a database, a cache, a bucket). ``config`` holds secrets."""

    name: str
    kind: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0

    def to_public_dict(self) -> dict[str, Any]:
        """The record with every secret in ``config`` masked: what an API may show."""
        return {"name": self.name, "kind": self.kind, "config": mask(self.config),
                "created": self.created, "updated": self.updated}


class Registry(abc.ABC):
    """What the gateway needs from a store of endpoints, revisions and services.

    Implementations: ``SQLiteRegistry`` (default). A PostgreSQL one for scale-out adds
    change notification on top of the same calls.
    """

    # endpoints
    @abc.abstractmethod
    def endpoints(self) -> list[EndpointRecord]: ...

    @abc.abstractmethod
    def get_endpoint(self, name: str) -> EndpointRecord:
        """The endpoint, or ``NotFoundError``."""

    @abc.abstractmethod
    def find_endpoint(self, name: str) -> EndpointRecord | None: ...

    @abc.abstractmethod
    async def put_endpoint(self, record: EndpointRecord, *,
                           expected_version: int | None = None) -> EndpointRecord:
        """Create or replace the endpoint's definition (route, source, options, origin,
        desired state). State, live revision and ``created`` of an existing one are kept.
        With ``expected_version`` the write happens only if the stored row's version is
        that (0: only if there is none); otherwise ``RegistryError(kind="conflict")``."""

    @abc.abstractmethod
    async def set_state(self, name: str, state: str, reason: str | None = None,
                        stderr_tail: str | None = None) -> EndpointRecord: ...

    @abc.abstractmethod
    async def set_desired(self, name: str, desired: str) -> EndpointRecord: ...

    @abc.abstractmethod
    async def set_live_revision(self, name: str, number: int | None) -> EndpointRecord: ...

    @abc.abstractmethod
    async def delete_endpoint(self, name: str) -> None: ...

    # revisions
    @abc.abstractmethod
    async def add_revision(self, endpoint: str, *, content_hash: str | None,
                           binary: str | None, profile: str, build_status: str,
                           diagnostics: Sequence[Any] = (), source: str | None = None,
                           deps: Sequence[str] = (),
                           artifact: str | None = None) -> RevisionRecord: ...

    @abc.abstractmethod
    async def prune_revisions(self, endpoint: str, keep: Sequence[int]) -> list[int]:
        """Delete the endpoint's revisions not numbered in ``keep`` (never the live one);
        the numbers deleted."""

    @abc.abstractmethod
    async def update_revision(self, endpoint: str, number: int, *, build_status: str,
                              binary: str | None = None, artifact: str | None = None,
                              content_hash: str | None = None,
                              diagnostics: Sequence[Any] | None = None) -> RevisionRecord:
        """Record a queued build's outcome on its revision."""

    @abc.abstractmethod
    def revisions(self, endpoint: str) -> list[RevisionRecord]:
        """Every revision of the endpoint, newest first."""

    @abc.abstractmethod
    def get_revision(self, endpoint: str, number: int) -> RevisionRecord: ...

    # services and bindings
    @abc.abstractmethod
    def services(self) -> list[ServiceRecord]: ...

    @abc.abstractmethod
    def get_service(self, name: str) -> ServiceRecord: ...

    @abc.abstractmethod
    async def put_service(self, record: ServiceRecord) -> ServiceRecord: ...

    @abc.abstractmethod
    async def delete_service(self, name: str) -> None: ...

    @abc.abstractmethod
    async def set_bindings(self, endpoint: str, services: Sequence[str]) -> None:
        """Bind the endpoint to exactly these services (replacing earlier bindings)."""

    @abc.abstractmethod
    def bindings(self, endpoint: str) -> list[str]: ...

    @abc.abstractmethod
    def bound_endpoints(self, service: str) -> list[str]: ...

    # change tracking, for processes that follow the registry
    @abc.abstractmethod
    def generation(self) -> int:
        """The registry version: grows by one with every write; followers resync when it
        changes."""

    def close(self) -> None:
        """Release the store's resources."""

    async def aclose(self) -> None:
        """Release the store's resources (a remote store closes its connections)."""
        self.close()


# Each entry moves the schema from version i to i + 1. Never edit a released entry; append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE endpoints (
        name TEXT PRIMARY KEY,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        domain TEXT,
        source TEXT NOT NULL DEFAULT '',
        deps TEXT NOT NULL DEFAULT '[]',
        options TEXT NOT NULL DEFAULT '{}',
        origin TEXT,
        desired TEXT NOT NULL DEFAULT 'running',
        state TEXT NOT NULL DEFAULT 'created',
        reason TEXT,
        stderr_tail TEXT,
        live_revision INTEGER,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE revisions (
        endpoint TEXT NOT NULL REFERENCES endpoints(name) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        content_hash TEXT,
        binary TEXT,
        profile TEXT NOT NULL,
        build_status TEXT NOT NULL,
        diagnostics TEXT NOT NULL DEFAULT '[]',
        created REAL NOT NULL,
        PRIMARY KEY (endpoint, number)
    );
    CREATE TABLE services (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE bindings (
        endpoint TEXT NOT NULL REFERENCES endpoints(name) ON DELETE CASCADE,
        service TEXT NOT NULL REFERENCES services(name) ON DELETE RESTRICT,
        PRIMARY KEY (endpoint, service)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('generation', 0);
    """,
    """
    ALTER TABLE endpoints ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE revisions ADD COLUMN source TEXT;
    ALTER TABLE revisions ADD COLUMN deps TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE revisions ADD COLUMN artifact TEXT;
    """,
]


def _describe(exc: sqlite3.Error, path: str) -> str:
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return (f"the registry database {path} is locked by another process "
                f"(sqlite: {text}); nothing was changed, try again")
    if "full" in lowered:
        return f"the disk holding the registry {path} is full (sqlite: {text}); nothing was changed"
    if "readonly" in lowered or "read-only" in lowered:
        return f"the registry database {path} is read-only (sqlite: {text})"
    if "not a database" in lowered or "malformed" in lowered:
        return f"the registry database {path} is damaged (sqlite: {text})"
    return f"registry error on {path}: {text}"


class SQLiteRegistry(Registry):
    """The registry in one SQLite file (WAL journal, foreign keys on).

    One connection, guarded by a lock, so the object may be used from the loop thread and
    from executor threads alike. ``busy_timeout`` bounds how long a call waits for a lock
    held by another process before it raises ``RegistryError``.
    """

    def __init__(self, path: str, *, busy_timeout: float = 1.0,
                 migrations: Sequence[str] | None = None):
        self.path = str(path)
        self._lock = threading.Lock()  # guards self._db: one statement sequence at a time
        self._version = 0  # the version the open write transaction writes
        self._migrations = list(MIGRATIONS if migrations is None else migrations)
        _keep_private(self.path)
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise RegistryError(_describe(exc, self.path)) from exc

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        target = len(self._migrations)
        if current > target:
            raise RegistryError(
                f"the registry {self.path} has schema version {current}, newer than this "
                f"edgebook understands ({target}); upgrade edgebook", kind="schema")
        for version in range(current, target):
            log.info("migrating registry %s to schema version %d", self.path, version + 1)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(self._migrations[version]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {version + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise RegistryError(_describe(exc, self.path)) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``self._version`` is the version it writes (the
        registry's version moves to it at commit)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._version = self._db.execute(
                    "SELECT value FROM meta WHERE key = 'generation'").fetchone()[0] + 1
            except sqlite3.Error as exc:
                raise RegistryError(_describe(exc, self.path)) from exc
            try:
                yield self._db
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'",
                                 (self._version,))
                self._db.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    log.warning("rollback failed on %s", self.path, exc_info=True)
                if isinstance(exc, sqlite3.IntegrityError):
                    raise RegistryError(f"registry constraint failed: {exc}",
                                        kind="conflict") from exc
                if isinstance(exc, sqlite3.Error):
                    raise RegistryError(_describe(exc, self.path)) from exc
                raise

    # -- endpoints -------------------------------------------------------------------------

    def endpoints(self) -> list[EndpointRecord]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM endpoints ORDER BY name").fetchall()
        return [_endpoint(row) for row in rows]

    def find_endpoint(self, name: str) -> EndpointRecord | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM endpoints WHERE name = ?", (name,)).fetchone()
        return _endpoint(row) if row else None

    def get_endpoint(self, name: str) -> EndpointRecord:
        record = self.find_endpoint(name)
        if record is None:
            raise NotFoundError(f"no endpoint named {name!r}")
        return record

    async def put_endpoint(self, record: EndpointRecord, *,
                           expected_version: int | None = None) -> EndpointRecord:
        check_desired(record.desired)
        now = _now()
        with self._write() as db:
            if expected_version is not None:
                row = db.execute("SELECT version FROM endpoints WHERE name = ?",
                                 (record.name,)).fetchone()
                check_expected(record.name, row[0] if row else None, expected_version)
            db.execute(
                """INSERT INTO endpoints (name, method, path, domain, source, deps, options,
                       origin, desired, state, created, updated, version)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'created', ?, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET method = excluded.method,
                       path = excluded.path, domain = excluded.domain,
                       source = excluded.source, deps = excluded.deps,
                       options = excluded.options, origin = excluded.origin,
                       desired = excluded.desired, updated = excluded.updated,
                       version = excluded.version""",
                (record.name, record.method, record.path, record.domain, record.source,
                 json.dumps(list(record.deps)), json.dumps(record.options),
                 json.dumps(record.origin) if record.origin is not None else None,
                 record.desired, now, now, self._version))
            row = db.execute("SELECT * FROM endpoints WHERE name = ?", (record.name,)).fetchone()
        return _endpoint(row)

    def _update(self, name: str, sql: str, params: tuple) -> EndpointRecord:
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE endpoints SET {sql}, updated = ?, version = ? WHERE name = ?",
                (*params, _now(), self._version, name))
            if cursor.rowcount == 0:
                raise NotFoundError(f"no endpoint named {name!r}")
            row = db.execute("SELECT * FROM endpoints WHERE name = ?", (name,)).fetchone()
        return _endpoint(row)

    async def set_state(self, name: str, state: str, reason: str | None = None,
                        stderr_tail: str | None = None) -> EndpointRecord:
        check_state(state)
        return self._update(name, "state = ?, reason = ?, stderr_tail = ?",
                            (state, reason, stderr_tail))

    async def set_desired(self, name: str, desired: str) -> EndpointRecord:
        check_desired(desired)
        return self._update(name, "desired = ?", (desired,))

    async def set_live_revision(self, name: str, number: int | None) -> EndpointRecord:
        return self._update(name, "live_revision = ?", (number,))

    async def delete_endpoint(self, name: str) -> None:
        with self._write() as db:
            if db.execute("DELETE FROM endpoints WHERE name = ?", (name,)).rowcount == 0:
                raise NotFoundError(f"no endpoint named {name!r}")

    # -- revisions -------------------------------------------------------------------------

    async def add_revision(self, endpoint: str, *, content_hash: str | None,
                           binary: str | None, profile: str, build_status: str,
                           diagnostics: Sequence[Any] = (), source: str | None = None,
                           deps: Sequence[str] = (),
                           artifact: str | None = None) -> RevisionRecord:
        with self._write() as db:
            if db.execute("SELECT 1 FROM endpoints WHERE name = ?", (endpoint,)).fetchone() is None:
                raise NotFoundError(f"no endpoint named {endpoint!r}")
            number = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM revisions "
                                "WHERE endpoint = ?", (endpoint,)).fetchone()[0]
            db.execute("""INSERT INTO revisions (endpoint, number, content_hash, binary,
                              profile, build_status, diagnostics, created, source, deps,
                              artifact)
                          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                       (endpoint, number, content_hash, binary, profile, build_status,
                        json.dumps(list(diagnostics)), _now(), source,
                        json.dumps(list(deps)), artifact))
            row = db.execute("SELECT * FROM revisions WHERE endpoint = ? AND number = ?",
                             (endpoint, number)).fetchone()
        return _revision(row)

    async def prune_revisions(self, endpoint: str, keep: Sequence[int]) -> list[int]:
        with self._write() as db:
            live = db.execute("SELECT live_revision FROM endpoints WHERE name = ?",
                              (endpoint,)).fetchone()
            kept = set(keep) | ({live[0]} if live and live[0] is not None else set())
            numbers = [r[0] for r in db.execute(
                "SELECT number FROM revisions WHERE endpoint = ? ORDER BY number", (endpoint,))
                if r[0] not in kept]
            db.executemany("DELETE FROM revisions WHERE endpoint = ? AND number = ?",
                           [(endpoint, n) for n in numbers])
        return numbers

    async def update_revision(self, endpoint: str, number: int, *, build_status: str,
                              binary: str | None = None, artifact: str | None = None,
                              content_hash: str | None = None,
                              diagnostics: Sequence[Any] | None = None) -> RevisionRecord:
        with self._write() as db:
            cursor = db.execute(
                """UPDATE revisions SET build_status = ?, binary = COALESCE(?, binary),
                       artifact = COALESCE(?, artifact),
                       content_hash = COALESCE(?, content_hash),
                       diagnostics = COALESCE(?, diagnostics)
                   WHERE endpoint = ? AND number = ?""",
                (build_status, binary, artifact, content_hash,
                 json.dumps(list(diagnostics)) if diagnostics is not None else None,
                 endpoint, number))
            if cursor.rowcount == 0:
                raise NotFoundError(f"endpoint {endpoint!r} has no revision {number}")
            row = db.execute("SELECT * FROM revisions WHERE endpoint = ? AND number = ?",
                             (endpoint, number)).fetchone()
        return _revision(row)

    def revisions(self, endpoint: str) -> list[RevisionRecord]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM revisions WHERE endpoint = ? ORDER BY number DESC",
                              (endpoint,)).fetchall()
        return [_revision(row) for row in rows]

    def get_revision(self, endpoint: str, number: int) -> RevisionRecord:
        with self._read() as db:
            row = db.execute("SELECT * FROM revisions WHERE endpoint = ? AND number = ?",
                             (endpoint, number)).fetchone()
        if row is None:
            raise NotFoundError(f"endpoint {endpoint!r} has no revision {number}")
        return _revision(row)

    # -- services --------------------------------------------------------------------------

    def services(self) -> list[ServiceRecord]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM services ORDER BY name").fetchall()
        return [_service(row) for row in rows]

    def get_service(self, name: str) -> ServiceRecord:
        with self._read() as db:
            row = db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no service named {name!r}")
        return _service(row)

    async def put_service(self, record: ServiceRecord) -> ServiceRecord:
        now = _now()
        with self._write() as db:
            db.execute("""INSERT INTO services (name, kind, config, created, updated)
                          VALUES (?, ?, ?, ?, ?)
                          ON CONFLICT(name) DO UPDATE SET kind = excluded.kind,
                              config = excluded.config, updated = excluded.updated""",
                       (record.name, record.kind, json.dumps(record.config), now, now))
            row = db.execute("SELECT * FROM services WHERE name = ?", (record.name,)).fetchone()
        return _service(row)

    async def delete_service(self, name: str) -> None:
        with self._write() as db:
            users = [r[0] for r in db.execute(
                "SELECT endpoint FROM bindings WHERE service = ? ORDER BY endpoint", (name,))]
            if users:
                raise RegistryError(f"service {name!r} is bound to endpoint(s) "
                                    f"{', '.join(users)}; unbind them first", kind="conflict")
            if db.execute("DELETE FROM services WHERE name = ?", (name,)).rowcount == 0:
                raise NotFoundError(f"no service named {name!r}")

    async def set_bindings(self, endpoint: str, services: Sequence[str]) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM endpoints WHERE name = ?", (endpoint,)).fetchone() is None:
                raise NotFoundError(f"no endpoint named {endpoint!r}")
            for service in services:
                if db.execute("SELECT 1 FROM services WHERE name = ?",
                              (service,)).fetchone() is None:
                    raise NotFoundError(f"no service named {service!r}")
            db.execute("DELETE FROM bindings WHERE endpoint = ?", (endpoint,))
            db.executemany("INSERT INTO bindings (endpoint, service) VALUES (?, ?)",
                           [(endpoint, s) for s in dict.fromkeys(services)])

    def bindings(self, endpoint: str) -> list[str]:
        with self._read() as db:
            return [r[0] for r in db.execute(
                "SELECT service FROM bindings WHERE endpoint = ? ORDER BY service", (endpoint,))]

    def bound_endpoints(self, service: str) -> list[str]:
        with self._read() as db:
            return [r[0] for r in db.execute(
                "SELECT endpoint FROM bindings WHERE service = ? ORDER BY endpoint", (service,))]

    def generation(self) -> int:
        with self._read() as db:
            return db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def check_state(state: str) -> None:
    if state not in STATES:
        raise RegistryError(f"unknown endpoint state {state!r}", kind="invalid")


def check_desired(desired: str) -> None:
    if desired not in DESIRED_STATES:
        raise RegistryError(f"desired state must be one of {DESIRED_STATES}", kind="invalid")


def check_expected(name: str, current: int | None, expected: int) -> None:
    """Optimistic concurrency: the write goes ahead only if the endpoint is at ``expected``
    (0: only if it does not exist yet)."""
    if (current or 0) != expected:
        now = "does not exist" if current is None else f"is at version {current}"
        raise RegistryError(
            f"endpoint {name!r} {now}, not {expected}: someone changed it since you read "
            "it; read it again and retry", kind="conflict")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _endpoint(row: sqlite3.Row) -> EndpointRecord:
    return EndpointRecord(
        name=row["name"], method=row["method"], path=row["path"], domain=row["domain"],
        source=row["source"], deps=json.loads(row["deps"]), options=json.loads(row["options"]),
        origin=json.loads(row["origin"]) if row["origin"] else None, desired=row["desired"],
        state=row["state"], reason=row["reason"], stderr_tail=row["stderr_tail"],
        live_revision=row["live_revision"], created=row["created"], updated=row["updated"],
        version=row["version"])


def _revision(row: sqlite3.Row) -> RevisionRecord:
    return RevisionRecord(
        endpoint=row["endpoint"], number=row["number"], content_hash=row["content_hash"],
        binary=row["binary"], profile=row["profile"], build_status=row["build_status"],
        diagnostics=json.loads(row["diagnostics"]), created=row["created"],
        source=row["source"], deps=json.loads(row["deps"]), artifact=row["artifact"])


def _service(row: sqlite3.Row) -> ServiceRecord:
    return ServiceRecord(name=row["name"], kind=row["kind"], config=json.loads(row["config"]),
                         created=row["created"], updated=row["updated"])


def _keep_private(path: str) -> None:
    """Create the registry file owner-only (it holds service credentials), or make it so.
    SQLite gives its -wal and -shm files the same mode."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        if os.stat(path).st_uid == os.geteuid():
            os.chmod(path, 0o600)
    except OSError:
        pass  # sqlite3.connect reports what is wrong with the path
