"""The ``sqlite`` kind: a SQLite file in the data dir, run on a small pool of threads.

Each pooled ``sqlite3`` connection is used by one task at a time and each statement runs
whole on an executor thread (one hop per call), so the event loop never waits on disk.
Connections run in autocommit mode with WAL journaling; ``db.begin`` opens
``BEGIN IMMEDIATE`` so a transaction holds the write lock from its start instead of failing
half-way when it first writes.

Config (all optional)::

    {"path": "services/shop.sqlite3", "pool_size": 4, "busy_timeout": 5.0, "timeout": 10}

``path`` is relative to the data dir and stays inside it (no absolute path, no ``..``, the
rule of the ``files`` kind); the default is ``services/<name>.sqlite3``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import sqlite3
from typing import Any

from . import config as check
from .errors import ServiceError
from .sql import SQLConnector, SQLResult, scalar_params
from .values import to_json

log = logging.getLogger(__name__)


class SQLiteDialect:
    now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

    @staticmethod
    def placeholder(n: int) -> str:
        return "?"

    def document_table(self, quoted: str) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {quoted} (id TEXT PRIMARY KEY, "
                f"data TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT ({self.now}), "
                f"updated_at TEXT NOT NULL DEFAULT ({self.now}))")

    @staticmethod
    def field_equals(field_param: int, value_param: int) -> str:
        return "json_extract(data, '$.\"' || ? || '\"') = json_extract(?, '$')"

    @staticmethod
    def decode_document(value: Any) -> Any:
        return json.loads(value)


def _run_statement(conn: sqlite3.Connection, sql: str, params: list) -> SQLResult:
    cursor = conn.execute(sql, params)
    try:
        raw = cursor.fetchall() if cursor.description else []
        names = [column[0] for column in cursor.description or ()]
        rows = [{name: to_json(value) for name, value in zip(names, row)} for row in raw]
        return SQLResult(rows, max(cursor.rowcount, 0))
    finally:
        cursor.close()


class SQLiteConnector(SQLConnector):
    kind = "sqlite"
    begin_sql = "BEGIN IMMEDIATE"
    dialect = SQLiteDialect()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = self.settings.data_dir / self.config["path"]
        self._size = int(self.config["pool_size"])
        self._idle: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()
        self._opened = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self._size, thread_name_prefix=f"sqlite-{self.name}")
        self._closed = False

    @classmethod
    def check_config(cls, config: dict[str, Any], name: str) -> dict[str, Any]:
        config = dict(config)
        check.only(config, {"path", "pool_size", "busy_timeout", "timeout"}, "sqlite")
        check.data_dir_path(config, "path", f"services/{name}.sqlite3", "sqlite")
        check.number(config, "pool_size", 4, integer=True)
        check.number(config, "busy_timeout", 5.0)
        if config.get("timeout") is not None:
            check.number(config, "timeout", 10.0)
        return config

    def describe_target(self) -> str:
        return str(self.path)

    # pool ---------------------------------------------------------------------------------
    async def acquire(self) -> sqlite3.Connection:
        if self._closed:
            raise self.unavailable("the service was closed")
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._idle.get_nowait()
        if self._opened < self._size:
            self._opened += 1  # hold the slot while the file opens
            try:
                return await self._in_thread(self._open)
            except BaseException:
                self._opened -= 1
                raise
        return await self._idle.get()

    async def give_back(self, conn: sqlite3.Connection) -> None:
        if self._closed:
            await self._in_thread(conn.close)
        else:
            self._idle.put_nowait(conn)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=float(self.config["busy_timeout"]))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def _in_thread(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        except OSError as exc:
            raise self.unavailable(str(exc)) from None

    # statements ---------------------------------------------------------------------------
    async def run(self, conn: sqlite3.Connection, sql: str, params: list, *,
                  fetch: bool = True) -> SQLResult:
        for value in params:
            if isinstance(value, str) and "\x00" in value:
                raise ServiceError("bad_request", "parameters must not contain NUL characters")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, _run_statement, conn, sql,
                                      scalar_params(params))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller gave up (timeout): stop the statement, and only hand the
            # connection back once its thread has let go of it.
            conn.interrupt()
            with contextlib.suppress(Exception):
                await future
            raise
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        except (OverflowError, ValueError) as exc:
            raise ServiceError("bad_request", f"invalid parameter: {exc}") from None

    def _error(self, exc: sqlite3.Error) -> ServiceError:
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in message:
            return self.unavailable(message)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in message:
            return ServiceError("timeout", f"sqlite service '{self.name}' is busy: {message}")
        return ServiceError("database", message, log_message=f"sqlite '{self.name}': {message}")

    async def test(self) -> dict[str, Any]:
        conn = await self.acquire()
        try:
            result = await self.run(conn, "SELECT sqlite_version() AS version", [])
        finally:
            await self.give_back(conn)
        return {"server_version": result.rows[0]["version"], "path": str(self.path)}

    async def close(self) -> None:
        await super().close()
        self._closed = True
        while not self._idle.empty():
            await self._in_thread(self._idle.get_nowait().close)
        self._executor.shutdown(wait=False)

