"""``Storage``: JSON documents with get/list/create/update/delete over three flavours.

- database flavour: a table ``(id TEXT PRIMARY KEY, data JSON, created_at, updated_at)`` in a
  SQL service, created on first use;
- object flavour: one object ``<base>/<id>.json`` per document in an object store (S3 or the
  local ``files`` kind);
- file flavour: one file ``<base>/<id>.json`` under the ``files`` service's directory inside
  the data dir.

``list`` takes an optional filter: a string matches the document's ``status`` field (the
original's pet store semantics); an object matches documents whose top-level fields equal
each given value.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from . import arguments
from .base import BlobStore, CallContext, StatementRunner
from .errors import ServiceError

#: ``storage_type`` values (the SDK's ``StorageType``) and the flavour each one names.
FLAVOURS = {"database": "database", "objectstorage": "object", "filestorage": "file"}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
DOCUMENT_ID = re.compile(r"^[A-Za-z0-9_@:+=,~-][A-Za-z0-9._@:+=,~-]{0,199}$")
BASE_SEGMENT = re.compile(r"^[A-Za-z0-9_@:+=,~-][A-Za-z0-9._@:+=,~-]{0,199}$")
LIST_CONCURRENCY = 8


def flavour_of(args: dict) -> str:
    storage_type = arguments.text(args, "storage_type", default="database")
    if storage_type not in FLAVOURS:
        raise arguments.bad_request(f"unknown storage_type '{storage_type}'; use one of "
                                    + ", ".join(FLAVOURS))
    return FLAVOURS[storage_type]


def document_id(args: dict, *, strict: bool) -> str:
    """The ``id`` argument; ``strict`` ids become file and object names, so no paths."""
    value = arguments.string_or_json(args, "id")
    if not value or len(value) > 200:
        raise arguments.bad_request("argument 'id' must be 1 to 200 characters")
    if strict and not DOCUMENT_ID.match(value):
        raise arguments.bad_request(
            "argument 'id' may only hold letters, digits and . _ @ : + = , ~ - (and must "
            "not start with a dot) in object and file storage")
    return value


def document_filter(args: dict) -> dict[str, Any] | None:
    value = args.get("filter")
    if value is None:
        return None
    if isinstance(value, str):
        return {"status": value}
    if not isinstance(value, dict):
        raise arguments.bad_request("argument 'filter' must be a string or an object")
    for field, expected in value.items():
        if not FIELD.match(field):
            raise arguments.bad_request(f"filter field '{field}' is not a plain field name")
        if isinstance(expected, (dict, list)):
            raise arguments.bad_request(f"filter value for '{field}' must be a scalar")
    return value


def matches(document: Any, wanted: dict[str, Any] | None) -> bool:
    """Whether every wanted top-level field holds an equal JSON value (1 is not true)."""
    if not wanted:
        return True
    if not isinstance(document, dict):
        return False
    return all(field in document and document[field] == value
               and isinstance(document[field], bool) == isinstance(value, bool)
               for field, value in wanted.items())


class SQLDocuments:
    """The database flavour, on a SQL connector (SQLite or PostgreSQL)."""

    def __init__(self, connector: StatementRunner):
        self.connector = connector
        self._tables: set[str] = set()
        self._create_lock = asyncio.Lock()

    async def call(self, op: str, args: dict, ctx: CallContext) -> Any:
        flavour = flavour_of(args)
        if flavour != "database":
            raise arguments.bad_request(
                f"service '{self.connector.name}' is a {self.connector.kind} database; "
                f"{flavour} storage needs an object store (s3 or files)")
        table = arguments.text(args, "table_name", default="documents")
        if not IDENTIFIER.match(table):
            raise arguments.bad_request(
                "argument 'table_name' must be a plain SQL name (letters, digits, underscore)")
        dialect = self.connector.dialect
        quoted = f'"{table}"'
        await self._ensure_table(ctx, table, quoted)
        p = dialect.placeholder
        if op == "storage.get":
            doc_id = document_id(args, strict=False)
            result = await self.connector.statement(
                ctx, f"SELECT data FROM {quoted} WHERE id = {p(1)}", [doc_id])
            if not result.rows:
                return None
            return dialect.decode_document(result.rows[0]["data"])
        if op == "storage.list":
            wanted = document_filter(args)
            sql, params = f"SELECT data FROM {quoted}", []
            if wanted:
                clauses = []
                for field, value in wanted.items():
                    n = len(params)
                    clauses.append(dialect.field_equals(n + 1, n + 2))
                    params += [field, json.dumps(value)]
                sql += " WHERE " + " AND ".join(clauses)
            result = await self.connector.statement(ctx, sql + " ORDER BY created_at, id",
                                                    params)
            return [dialect.decode_document(row["data"]) for row in result.rows]
        if op == "storage.delete":
            doc_id = document_id(args, strict=False)
            result = await self.connector.statement(
                ctx, f"DELETE FROM {quoted} WHERE id = {p(1)}", [doc_id], fetch=False)
            return result.rows_affected > 0
        doc_id = document_id(args, strict=False)
        data = json.dumps(arguments.present(args, "data"), separators=(",", ":"),
                          ensure_ascii=False)
        if op == "storage.create":
            result = await self.connector.statement(
                ctx, f"INSERT INTO {quoted} (id, data) VALUES ({p(1)}, {p(2)}) "
                     f"ON CONFLICT (id) DO NOTHING", [doc_id, data], fetch=False)
            if result.rows_affected == 0:
                raise ServiceError("storage", f"document '{doc_id}' already exists in '{table}'")
            return None
        # storage.update
        result = await self.connector.statement(
            ctx, f"UPDATE {quoted} SET data = {p(1)}, updated_at = {dialect.now} "
                 f"WHERE id = {p(2)}", [data, doc_id], fetch=False)
        if result.rows_affected == 0:
            raise ServiceError("storage", f"document '{doc_id}' does not exist in '{table}'")
        return None

    async def _ensure_table(self, ctx: CallContext, table: str, quoted: str) -> None:
        if table in self._tables:
            return
        async with self._create_lock:
            if table not in self._tables:
                await self.connector.statement(
                    ctx, self.connector.dialect.document_table(quoted), [], fetch=False)
                self._tables.add(table)

    def forget_tables(self) -> None:
        """Tables may be gone (server reset): check again on next use."""
        self._tables.clear()


class BlobDocuments:
    """The object and file flavours, on an object store: ``<base>/<id>.json``."""

    def __init__(self, store: BlobStore):
        self.store = store

    async def call(self, op: str, args: dict, ctx: CallContext) -> Any:
        flavour = flavour_of(args)
        if flavour == "database":
            raise arguments.bad_request(
                f"service '{self.store.name}' is an object store ({self.store.kind}); "
                "database storage needs a sqlite or postgres service")
        base = self._base(args)
        if op == "storage.list":
            return await self._list(base, document_filter(args))
        doc_id = document_id(args, strict=True)
        key = f"{base}/{doc_id}.json" if base else f"{doc_id}.json"
        if op == "storage.get":
            found = await self.store.get_blob(key)
            return None if found is None else self._decode(key, found[0])
        if op == "storage.delete":
            return await self.store.delete_blob(key)
        data = arguments.present(args, "data")
        exists = await self.store.blob_exists(key)
        if op == "storage.create" and exists:
            raise ServiceError("storage", f"document '{doc_id}' already exists in '{base}'")
        if op == "storage.update" and not exists:
            raise ServiceError("storage", f"document '{doc_id}' does not exist in '{base}'")
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        await self.store.put_blob(key, body, "application/json")
        return None

    @staticmethod
    def _base(args: dict) -> str:
        base = arguments.text(args, "base_path", default="", allow_empty=True).strip("/")
        if not base:
            return ""
        for segment in base.split("/"):
            if not BASE_SEGMENT.match(segment):
                raise arguments.bad_request(
                    f"argument 'base_path' has an invalid segment '{segment}' (no empty, '.' or "
                    "'..' segments, no special characters)")
        return base

    async def _list(self, base: str, wanted: dict | None) -> list[Any]:
        prefix = f"{base}/" if base else ""
        keys = [item["key"] for item in await self.store.list_blobs(prefix)
                if item["key"].endswith(".json") and "/" not in item["key"][len(prefix):]]
        limit = asyncio.Semaphore(LIST_CONCURRENCY)

        async def load(key: str) -> Any:
            async with limit:
                found = await self.store.get_blob(key)
            return None if found is None else self._decode(key, found[0])

        documents = await asyncio.gather(*(load(key) for key in sorted(keys)))
        return [doc for doc in documents if doc is not None and matches(doc, wanted)]

    def _decode(self, key: str, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise ServiceError("storage", f"object '{key}' does not hold a JSON document") \
                from None
