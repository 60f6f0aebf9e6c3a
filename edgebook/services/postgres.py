"""The ``postgres`` kind: PostgreSQL through an ``asyncpg`` pool.

Config: either ``{"dsn": "postgresql://user:password@host:5432/db"}`` or
``{"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": null,
"database": "postgres"}``, plus ``"min_size": 1``, ``"max_size": 10`` and ``"timeout"``
(seconds per call, also the server's ``statement_timeout``).

SQL uses ``$1, $2, ...`` placeholders; a statement without any ``$n`` may use ``?`` instead
(as in SQLite), which is rewritten to ``$n`` outside string literals, quoted names, comments
and dollar-quoted bodies. A ``?`` that is an operator stays: one glued to ``|``, ``&``,
``-``, ``#`` or after ``@`` (jsonb ``?|``, ``?&``, ``@?``, the geometric ones), and one that
follows an operand (a name that is not a keyword, a literal, ``)`` or ``]``), as in
``doc ? 'key'``. ``rows_affected`` is the server's own count from the command status
(``UPDATE 2``), for ``db.query`` too.
Parameters are always bound. Because handlers often pass every parameter as a string, each
one is converted to the type PostgreSQL expects for it (``"42"`` for an ``integer``,
``"2024-05-01T10:00:00Z"`` for a ``timestamptz``, base64 for ``bytea``...). Each call runs
exactly one statement. ``json``/``jsonb`` columns come back as JSON values, ``numeric`` as
strings (see values.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import decimal
import json
import logging
import re
import uuid
from typing import Any

import asyncpg

from . import config as check
from .errors import ServiceConfigError, ServiceError
from .sql import SQLConnector, SQLResult, scalar_params
from .values import to_json

log = logging.getLogger(__name__)

_COUNTED = re.compile(r"^(INSERT \d+|UPDATE|DELETE|MERGE|COPY|MOVE|FETCH) ?(\d+)?$")
PARAM_TYPE_CACHE = 512


def _affected(status: str) -> int:
    counted = _COUNTED.match(status or "")
    return int(counted.group(2)) if counted and counted.group(2) else 0
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_NUMBERED = re.compile(r"\$\d+")
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_$]*")
#: After these words a value is expected, so a ``?`` is a placeholder; after any other
#: name (a column, a function's result) it is the jsonb operator.
_BEFORE_VALUE = frozenset({
    "select", "where", "and", "or", "not", "in", "values", "set", "like", "ilike", "similar",
    "is", "between", "then", "else", "when", "case", "limit", "offset", "on", "having",
    "distinct", "all", "any", "some", "exists", "returning", "from", "escape", "by", "as",
    "default", "to", "with", "into", "using", "return", "over", "filter"})
#: A ``?`` glued to one of these is part of an operator (``?|``, ``?&``, ``?-``, ``?#``).
_OPERATOR_AFTER = "|&-#"


def _skip_quoted(sql: str, i: int) -> int:
    """Index just past the literal, quoted name, comment or dollar body starting at ``i``
    (``i`` itself when nothing starts there)."""
    c, n = sql[i], len(sql)
    if c == "'" or c == '"':
        backslashes = c == "'" and i > 0 and sql[i - 1] in "eE" and \
            (i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
        j = i + 1
        while j < n:
            if backslashes and sql[j] == "\\":
                j += 2
                continue
            if sql[j] == c:
                if j + 1 < n and sql[j + 1] == c:
                    j += 2
                    continue
                return j + 1
            j += 1
        return n
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return n if end < 0 else end + 1
    if sql.startswith("/*", i):
        depth, j = 1, i + 2
        while j < n and depth:
            if sql.startswith("/*", j):
                depth, j = depth + 1, j + 2
            elif sql.startswith("*/", j):
                depth, j = depth - 1, j + 2
            else:
                j += 1
        return j
    if c == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
        tag = _DOLLAR_TAG.match(sql, i)
        if tag:
            end = sql.find(tag.group(0), tag.end())
            return n if end < 0 else end + len(tag.group(0))
    return i


def translate_placeholders(sql: str) -> str:
    """``?`` placeholders to ``$1..$n``, unless the statement already uses ``$n``; ``?``
    operators (see the module's docstring) are left alone."""
    if "?" not in sql:
        return sql
    out, i, n, count = [], 0, len(sql), 0
    operand = False  # the last token ended an operand: a '?' now is an operator
    while i < n:
        j = _skip_quoted(sql, i)
        if j != i:
            if sql[i] in "'\"$":  # a literal, a quoted name or a dollar body; not a comment
                operand = True
            out.append(sql[i:j])
            i = j
            continue
        c = sql[i]
        if c.isspace():
            out.append(c)
            i += 1
            continue
        if c == "$" and _NUMBERED.match(sql, i):
            return sql  # the statement numbers its own placeholders
        word = _WORD.match(sql, i)
        if word:
            operand = word.group(0).lower() not in _BEFORE_VALUE
            out.append(word.group(0))
            i = word.end()
            continue
        if c == "?":
            glued = (i + 1 < n and sql[i + 1] in _OPERATOR_AFTER) or \
                (i > 0 and sql[i - 1] == "@")
            if glued or operand:
                out.append(c)
                operand = False
            else:
                count += 1
                out.append(f"${count}")
                operand = True
            i += 1
            continue
        operand = c in ")]"
        out.append(c)
        i += 1
    return "".join(out)


_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


def _to_int(v):
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return int(v.strip()) if isinstance(v, str) else v


def _to_bool(v):
    if isinstance(v, str):
        low = v.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError("not a boolean")
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    return v


def _to_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, (int, float)) else v


def _to_datetime(v, *, aware: bool):
    if not isinstance(v, str):
        return v
    value = datetime.datetime.fromisoformat(v.strip())
    if aware and value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


_COERCE = {
    "int2": _to_int, "int4": _to_int, "int8": _to_int, "oid": _to_int,
    "float4": lambda v: float(v) if isinstance(v, (str, int)) else v,
    "float8": lambda v: float(v) if isinstance(v, (str, int)) else v,
    "numeric": lambda v: decimal.Decimal(str(v)) if isinstance(v, (str, int, float)) else v,
    "bool": _to_bool,
    "text": _to_text, "varchar": _to_text, "bpchar": _to_text, "name": _to_text,
    "unknown": _to_text, "char": _to_text,
    "date": lambda v: datetime.date.fromisoformat(v.strip()) if isinstance(v, str) else v,
    "timestamp": lambda v: _to_datetime(v, aware=False),
    "timestamptz": lambda v: _to_datetime(v, aware=True),
    "time": lambda v: datetime.time.fromisoformat(v.strip()) if isinstance(v, str) else v,
    "uuid": lambda v: uuid.UUID(v) if isinstance(v, str) else v,
    "bytea": lambda v: base64.b64decode(v, validate=True) if isinstance(v, str) else v,
    "interval": lambda v: datetime.timedelta(seconds=v)
    if isinstance(v, (int, float)) and not isinstance(v, bool) else v,
}


def coerce_params(types: tuple, params: list) -> list:
    """Each parameter converted to what asyncpg wants for the type PostgreSQL expects."""
    if len(types) != len(params):
        raise ServiceError("bad_request", f"the statement takes {len(types)} parameter(s), "
                                          f"{len(params)} given")
    out = []
    for n, (pgtype, value) in enumerate(zip(types, params), 1):
        if value is None:
            out.append(None)
            continue
        convert = _COERCE.get(pgtype.name)
        if pgtype.kind == "array" and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if pgtype.kind == "array" and isinstance(value, list):
            element = _COERCE.get(pgtype.name.lstrip("_"))
            convert = (lambda v, element=element: [element(x) if element and x is not None
                                                   else x for x in v])
        try:
            out.append(convert(value) if convert else value)
        except (ValueError, TypeError, ArithmeticError, binascii.Error):
            raise ServiceError("bad_request", f"parameter ${n}: {value!r} is not a valid "
                                              f"{pgtype.name}") from None
    return out


def _json_encode(value: Any) -> str:
    # A string is taken as JSON text already (the SDK sends documents that way).
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


async def _fetch_with_status(conn: asyncpg.Connection, sql: str,
                             values: list) -> tuple[list, str]:
    """The rows and the command status (``UPDATE 2``) of one statement, in one round trip.
    asyncpg's ``fetch`` drops the status and ``execute`` the rows; both are built on
    ``_execute(..., return_status=True)`` (asyncpg 0.29 to 0.32), used here the same way,
    through the connection's statement cache."""
    records, status, _ = await conn._execute(sql, values, 0, None, return_status=True)
    return records, status.decode()


class PostgresDialect:
    now = "now()"

    @staticmethod
    def placeholder(n: int) -> str:
        return f"${n}"

    @staticmethod
    def document_table(quoted: str) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {quoted} (id TEXT PRIMARY KEY, "
                "data JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
                "updated_at TIMESTAMPTZ NOT NULL DEFAULT now())")

    @staticmethod
    def field_equals(field_param: int, value_param: int) -> str:
        return f"data -> ${field_param} = ${value_param}::jsonb"

    @staticmethod
    def decode_document(value: Any) -> Any:
        return value


class PostgresConnector(SQLConnector):
    kind = "postgres"
    dialect = PostgresDialect()
    secret_keys = frozenset({"password"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._param_types: dict[str, tuple] = {}

    @classmethod
    def check_config(cls, config: dict[str, Any], name: str) -> dict[str, Any]:
        config = dict(config)
        check.only(config, {"dsn", "host", "port", "user", "password", "database",
                            "min_size", "max_size", "timeout"}, "postgres")
        dsn = check.text(config, "dsn")
        if dsn is not None:
            if not dsn.startswith(("postgres://", "postgresql://")):
                raise ServiceConfigError("postgres 'dsn' must start with postgresql://")
        else:
            check.text(config, "host", "127.0.0.1")
            check.number(config, "port", 5432, integer=True)
            check.text(config, "user", "postgres")
            check.text(config, "password")
            check.text(config, "database", "postgres")
        check.number(config, "min_size", 1, integer=True, strict=False)
        check.number(config, "max_size", 10, integer=True)
        if config["min_size"] > config["max_size"]:
            raise ServiceConfigError("'min_size' must not be above 'max_size'")
        if config.get("timeout") is not None:
            check.number(config, "timeout", 10.0)
        return config

    def describe_target(self) -> str:
        if self.config.get("dsn"):
            return self.config["dsn"].rpartition("@")[2]
        return f"{self.config['host']}:{self.config['port']}/{self.config['database']}"

    # pool ---------------------------------------------------------------------------------
    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                connect = ({"dsn": self.config["dsn"]} if self.config.get("dsn") else
                           {key: self.config.get(key) for key in
                            ("host", "port", "user", "password", "database")})
                try:
                    self._pool = await asyncpg.create_pool(
                        **connect, min_size=self.config["min_size"],
                        max_size=self.config["max_size"],
                        timeout=self.settings.connect_timeout,
                        command_timeout=self.call_timeout,
                        server_settings={
                            "statement_timeout": str(int(self.call_timeout * 1000)),
                            "application_name": "edgebook"},
                        init=self._init_connection)
                except Exception as exc:
                    raise self._connect_error(exc) from None
        return self._pool

    @staticmethod
    async def _init_connection(conn: asyncpg.Connection) -> None:
        for name in ("json", "jsonb"):
            await conn.set_type_codec(name, encoder=_json_encode, decoder=json.loads,
                                      schema="pg_catalog")

    def _connect_error(self, exc: BaseException) -> ServiceError:
        if isinstance(exc, ServiceError):
            return exc
        if isinstance(exc, (asyncpg.InvalidPasswordError,
                            asyncpg.InvalidAuthorizationSpecificationError)):
            return ServiceError("unavailable", f"postgres service '{self.name}' refused the "
                                               "configured credentials",
                                log_message=str(exc))
        return self.unavailable(f"{type(exc).__name__}: {exc}")

    async def acquire(self) -> asyncpg.Connection:
        pool = await self._get_pool()
        try:
            return await pool.acquire(timeout=self.settings.connect_timeout)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                asyncpg.InvalidPasswordError,
                asyncpg.InvalidAuthorizationSpecificationError) as exc:
            raise self._connect_error(exc) from None

    async def give_back(self, conn: asyncpg.Connection) -> None:
        if self._pool is not None:
            await self._pool.release(conn)

    # statements ---------------------------------------------------------------------------
    async def run(self, conn: asyncpg.Connection, sql: str, params: list, *,
                  fetch: bool = True) -> SQLResult:
        try:
            if not params and sql in ("BEGIN", "COMMIT", "ROLLBACK"):
                await conn.execute(sql)
                return SQLResult([], 0)
            sql = translate_placeholders(sql)
            try:
                return await self._run_typed(conn, sql, scalar_params(params), fetch)
            except asyncpg.DataError:
                # The schema may have changed since the parameter types were learnt.
                self._param_types.pop(sql, None)
                return await self._run_typed(conn, sql, scalar_params(params), fetch)
        except ServiceError:
            raise
        except asyncpg.QueryCanceledError as exc:
            raise ServiceError("timeout", f"postgres service '{self.name}': {exc}") from None
        except (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                asyncpg.AdminShutdownError, asyncpg.InterfaceError, OSError) as exc:
            raise self.unavailable(f"{type(exc).__name__}: {exc}") from None
        except asyncpg.DataError as exc:
            raise ServiceError("bad_request", str(exc)) from None
        except asyncpg.PostgresError as exc:
            raise ServiceError("database", str(exc),
                               log_message=f"postgres '{self.name}' [{exc.sqlstate}] {exc}") \
                from None

    async def _run_typed(self, conn: asyncpg.Connection, sql: str, params: list,
                         fetch: bool) -> SQLResult:
        """One round trip once the statement's parameter types are known (asyncpg caches
        the prepared statement per connection); the first time, one more to learn them."""
        types = self._param_types.get(sql)
        if types is None:
            statement = await conn.prepare(sql)
            types = statement.get_parameters()
            if len(self._param_types) >= PARAM_TYPE_CACHE:
                self._param_types.clear()
            self._param_types[sql] = types
        values = coerce_params(types, params)
        if not fetch:
            return SQLResult([], _affected(await conn.execute(sql, *values)))
        records, status = await _fetch_with_status(conn, sql, values)
        rows = [{key: to_json(value) for key, value in record.items()} for record in records]
        return SQLResult(rows, _affected(status))

    async def test(self) -> dict[str, Any]:
        conn = await self.acquire()
        try:
            result = await self.run(conn, "SHOW server_version", [])
        finally:
            await self.give_back(conn)
        return {"server_version": result.rows[0]["server_version"]}

    async def close(self) -> None:
        await super().close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.settings.connect_timeout)
            except (asyncio.TimeoutError, OSError, asyncpg.PostgresError):
                pool.terminate()
