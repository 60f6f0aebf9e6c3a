"""What SQL connectors share: the ``db.*`` operations, parameters and request transactions.

A transaction belongs to one request of one endpoint: ``db.begin`` takes a connection out of
the pool and pins it to the request id; the request's later SQL calls run on it until
``db.commit`` or ``db.rollback`` gives it back. When the request ends with the transaction
still open, ``release(request_id)`` rolls it back; a transaction left open longer than
``Settings.transaction_timeout`` is rolled back too, so a lost request cannot hold a
connection forever.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from . import arguments
from .base import CallContext, Connector
from .documents import SQLDocuments
from .errors import ServiceError

log = logging.getLogger("edgebook.services")

MAX_SQL_LENGTH = 1_000_000

SQL_OPS = frozenset({"db.query", "db.execute", "db.begin", "db.commit", "db.rollback"})
DOCUMENT_OPS = frozenset({"storage.get", "storage.list", "storage.create", "storage.update",
                          "storage.delete"})


@dataclasses.dataclass
class SQLResult:
    rows: list[dict[str, Any]]
    rows_affected: int


@dataclasses.dataclass
class _Pin:
    """An open transaction: the connection a request holds and its expiry timer."""

    endpoint: str
    conn: Any
    timer: asyncio.TimerHandle | None = None


def scalar_params(values: list) -> list:
    """Parameters as driver values: JSON scalars as they are, arrays and objects as JSON."""
    out = []
    for value in values:
        if isinstance(value, (dict, list)):
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        out.append(value)
    return out


class SQLConnector(Connector):
    """Base of the SQL connectors; subclasses supply the pool and one statement runner."""

    ops = SQL_OPS | DOCUMENT_OPS
    #: Statement that opens a transaction on a pinned connection.
    begin_sql = "BEGIN"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pinned: dict[str, _Pin] = {}
        self.documents = SQLDocuments(self)

    # what a dialect supplies -------------------------------------------------------------
    @abc.abstractmethod
    async def acquire(self) -> Any:
        """A connection from the pool (``ServiceError`` ``unavailable`` if none can be had)."""

    @abc.abstractmethod
    async def give_back(self, conn: Any) -> None:
        """Return a connection to the pool."""

    @abc.abstractmethod
    async def run(self, conn: Any, sql: str, params: list) -> SQLResult:
        """Run one statement with bound parameters; driver errors become ``ServiceError``."""

    # operations --------------------------------------------------------------------------
    async def call(self, op: str, args: dict[str, Any], ctx: CallContext) -> Any:
        if op in DOCUMENT_OPS:
            return await self.documents.call(op, args, ctx)
        if op == "db.query" or op == "db.execute":
            sql = arguments.text(args, "sql", max_length=MAX_SQL_LENGTH)
            params = arguments.json_list(args, "params")
            result = await self.statement(ctx, sql, params)
            if op == "db.execute":
                return {"rows_affected": result.rows_affected}
            return {"rows": result.rows, "rows_affected": result.rows_affected}
        if op == "db.begin":
            await self.begin(ctx)
        elif op == "db.commit":
            await self.finish(ctx, "COMMIT")
        elif op == "db.rollback":
            await self.finish(ctx, "ROLLBACK")
        return {}

    async def statement(self, ctx: CallContext, sql: str, params: list) -> SQLResult:
        async with self.connection(ctx) as conn:
            return await self.run(conn, sql, params)

    @contextlib.asynccontextmanager
    async def connection(self, ctx: CallContext) -> AsyncIterator[Any]:
        """The request's pinned connection if it has a transaction open, else a pooled one."""
        pin = self._pinned.get(ctx.request_id)
        if pin is not None and pin.endpoint == ctx.endpoint:
            yield pin.conn
            return
        conn = await self.acquire()
        try:
            yield conn
        finally:
            await self.give_back(conn)

    # transactions ------------------------------------------------------------------------
    def in_transaction(self, request_id: str) -> bool:
        return request_id in self._pinned

    async def begin(self, ctx: CallContext) -> None:
        if ctx.request_id in self._pinned:
            raise arguments.bad_request("a transaction is already open in this request")
        conn = await self.acquire()
        try:
            await self.run(conn, self.begin_sql, [])
        except BaseException:
            await self.give_back(conn)
            raise
        pin = _Pin(ctx.endpoint, conn)
        self._pinned[ctx.request_id] = pin
        loop = asyncio.get_running_loop()
        pin.timer = loop.call_later(self.settings.transaction_timeout,
                                    self._expire, ctx.request_id)

    async def finish(self, ctx: CallContext, statement: str) -> None:
        pin = self._pinned.get(ctx.request_id)
        if pin is None or pin.endpoint != ctx.endpoint:
            raise arguments.bad_request(
                f"no transaction is open in this request ({statement.lower()} without begin)")
        del self._pinned[ctx.request_id]
        await self._end(pin, statement)

    async def release(self, request_id: str) -> None:
        pin = self._pinned.pop(request_id, None)
        if pin is not None:
            log.info("rolling back the open transaction of request %s on '%s'",
                     request_id, self.name)
            await self._end(pin, "ROLLBACK")

    def _expire(self, request_id: str) -> None:
        if request_id in self._pinned:
            log.warning("transaction of request %s on '%s' open for more than %ss; rolling "
                        "back", request_id, self.name, self.settings.transaction_timeout)
            self._pinned[request_id].timer = None
            asyncio.ensure_future(self.release(request_id))

    async def _end(self, pin: _Pin, statement: str) -> None:
        if pin.timer is not None:
            pin.timer.cancel()
        try:
            await self.run(pin.conn, statement, [])
        except ServiceError:
            if statement == "COMMIT":
                await self._discard_transaction(pin.conn)
                raise
            log.warning("rollback on '%s' failed; dropping the connection", self.name)
            await self._discard_transaction(pin.conn)
            return
        await self.give_back(pin.conn)

    async def _discard_transaction(self, conn: Any) -> None:
        """After a failed commit or rollback: make sure nothing stays open, then give back."""
        with contextlib.suppress(ServiceError):
            await self.run(conn, "ROLLBACK", [])
        await self.give_back(conn)

    async def close(self) -> None:
        for request_id in list(self._pinned):
            with contextlib.suppress(ServiceError):
                await self.release(request_id)
