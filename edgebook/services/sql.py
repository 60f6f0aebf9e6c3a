"""What SQL connectors share: the ``db.*`` operations, parameters and request transactions.

``db.begin`` takes a connection out of the pool, opens a transaction on it and answers
``{"tx": id}``; calls that pass that ``tx`` run on the pinned connection until ``db.commit``
or ``db.rollback`` gives it back. A transaction belongs to the request (endpoint and request
id) that began it: other requests cannot use it, and when the request ends with it still
open, ``release(request_id)`` rolls it back. One left open longer than
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
import secrets
from typing import Any

from . import arguments
from .base import CallContext, Connector
from .documents import SQLDocuments
from .errors import ServiceError

log = logging.getLogger(__name__)

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
    """An open transaction: who owns it, the connection it holds, its expiry timer."""

    endpoint: str
    request_id: str
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
        self._expiring: set[asyncio.Task] = set()
        self.documents = SQLDocuments(self)

    # what a dialect supplies -------------------------------------------------------------
    @abc.abstractmethod
    async def acquire(self) -> Any:
        """A connection from the pool (``ServiceError`` ``unavailable`` if none can be had)."""

    @abc.abstractmethod
    async def give_back(self, conn: Any) -> None:
        """Return a connection to the pool."""

    @abc.abstractmethod
    async def run(self, conn: Any, sql: str, params: list, *, fetch: bool = True) -> SQLResult:
        """Run one statement with bound parameters; driver errors become ``ServiceError``.
        ``fetch=False`` when only the affected-row count is wanted."""

    # operations --------------------------------------------------------------------------
    async def call(self, op: str, args: dict[str, Any], ctx: CallContext) -> Any:
        if op in DOCUMENT_OPS:
            return await self.documents.call(op, args, ctx)
        if op == "db.query" or op == "db.execute":
            sql = arguments.text(args, "sql", max_length=MAX_SQL_LENGTH)
            params = arguments.json_list(args, "params")
            tx = arguments.text(args, "tx", default=None)
            fetch = op == "db.query"
            if tx is None:
                result = await self.statement(ctx, sql, params, fetch=fetch)
            else:
                result = await self.run(self._pin(ctx, tx).conn, sql, params, fetch=fetch)
            if op == "db.execute":
                return {"rows_affected": result.rows_affected}
            return {"rows": result.rows, "rows_affected": result.rows_affected}
        if op == "db.begin":
            return {"tx": await self.begin(ctx)}
        tx = arguments.text(args, "tx", default=None)
        await self.finish(ctx, tx, "COMMIT" if op == "db.commit" else "ROLLBACK")
        return None

    async def statement(self, ctx: CallContext, sql: str, params: list, *,
                        fetch: bool = True) -> SQLResult:
        """Run one statement on a pooled connection."""
        conn = await self.acquire()
        try:
            return await self.run(conn, sql, params, fetch=fetch)
        finally:
            await self.give_back(conn)

    # transactions ------------------------------------------------------------------------
    def has_transactions(self, endpoint: str, request_id: str) -> bool:
        return any(pin.request_id == request_id and pin.endpoint == endpoint
                   for pin in self._pinned.values())

    def _pin(self, ctx: CallContext, tx: str) -> _Pin:
        pin = self._pinned.get(tx)
        if pin is None or pin.endpoint != ctx.endpoint or pin.request_id != ctx.request_id:
            raise arguments.bad_request(
                f"transaction '{tx}' is not open in this request (it was committed, rolled "
                "back, timed out, or belongs to another request)")
        return pin

    async def begin(self, ctx: CallContext) -> str:
        conn = await self.acquire()
        try:
            await self.run(conn, self.begin_sql, [])
        except BaseException:
            await self.give_back(conn)
            raise
        tx = secrets.token_hex(8)
        pin = self._pinned[tx] = _Pin(ctx.endpoint, ctx.request_id, conn)
        loop = asyncio.get_running_loop()
        pin.timer = loop.call_later(self.settings.transaction_timeout, self._expire, tx)
        return tx

    async def finish(self, ctx: CallContext, tx: str | None, statement: str) -> None:
        if tx is None:
            # Without an id, the request's only open transaction is meant.
            mine = [key for key, pin in self._pinned.items()
                    if pin.endpoint == ctx.endpoint and pin.request_id == ctx.request_id]
            if len(mine) != 1:
                raise arguments.bad_request(
                    f"{statement.lower()} needs the 'tx' of the transaction to finish"
                    if mine else f"no transaction is open in this request "
                                 f"({statement.lower()} without begin)")
            tx = mine[0]
        pin = self._pin(ctx, tx)
        del self._pinned[tx]
        await self._end(pin, statement)

    async def release(self, endpoint: str, request_id: str) -> None:
        for tx in [key for key, pin in self._pinned.items()
                   if pin.request_id == request_id and pin.endpoint == endpoint]:
            pin = self._pinned.pop(tx)
            log.info("rolling back transaction %s of request %s on '%s' (not committed)",
                     tx, request_id, self.name)
            await self._end(pin, "ROLLBACK")

    def _expire(self, tx: str) -> None:
        pin = self._pinned.pop(tx, None)
        if pin is not None:
            log.warning("transaction %s of request %s on '%s' open for more than %g s; "
                        "rolling back", tx, pin.request_id, self.name,
                        self.settings.transaction_timeout)
            pin.timer = None
            task = asyncio.ensure_future(self._end(pin, "ROLLBACK"))
            self._expiring.add(task)
            task.add_done_callback(self._expiring.discard)

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
        for pin in list(self._pinned.values()):
            with contextlib.suppress(ServiceError):
                await self.release(pin.endpoint, pin.request_id)
