"""What object stores share: the ``objects.*`` operations and JSON documents over blobs.

Raw objects travel as standard base64 (``data``) with a ``content_type``. A connector of an
object-store kind supplies five blob primitives; ``objects.*`` and the object and file
flavours of ``storage.*`` are built on them.
"""

from __future__ import annotations

import abc
import base64
from typing import Any

from . import arguments
from .base import CallContext, Connector
from .documents import BlobDocuments

MAX_KEY_LENGTH = 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_LIST_LIMIT = 1000
MAX_LIST_LIMIT = 10000

OBJECT_OPS = frozenset({"objects.get", "objects.put", "objects.delete", "objects.list"})
DOCUMENT_OPS = frozenset({"storage.get", "storage.list", "storage.create", "storage.update",
                          "storage.delete"})


def object_key(args: dict) -> str:
    """The ``key`` argument: a relative path of non-empty segments, none '.' or '..'."""
    key = arguments.text(args, "key", max_length=MAX_KEY_LENGTH)
    segments = key.split("/")
    if "\x00" in key or "\\" in key or any(s in ("", ".", "..") for s in segments):
        raise arguments.bad_request(
            "argument 'key' must be a relative path like 'images/cat.png' (no leading or "
            "double '/', no '.' or '..' segments, no backslashes)")
    return key


class ObjectConnector(Connector):
    """Base of the object-store connectors (``s3``, ``files``)."""

    ops = OBJECT_OPS | DOCUMENT_OPS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.documents = BlobDocuments(self)

    # blob primitives ---------------------------------------------------------------------
    @abc.abstractmethod
    async def get_blob(self, key: str) -> tuple[bytes, str] | None:
        """``(bytes, content_type)``, or None when there is no such object."""

    @abc.abstractmethod
    async def put_blob(self, key: str, data: bytes, content_type: str) -> None: ...

    @abc.abstractmethod
    async def delete_blob(self, key: str) -> bool:
        """Delete; True when the object existed."""

    @abc.abstractmethod
    async def blob_exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def list_blobs(self, prefix: str, limit: int = MAX_LIST_LIMIT) -> list[dict]:
        """Objects whose key starts with ``prefix``, by key: ``{"key", "size",
        "content_type", "last_modified"}`` (content type null when the store does not say
        without a further request; ``last_modified`` ISO 8601)."""

    # operations --------------------------------------------------------------------------
    async def call(self, op: str, args: dict[str, Any], ctx: CallContext) -> Any:
        if op in DOCUMENT_OPS:
            return await self.documents.call(op, args, ctx)
        if op == "objects.list":
            prefix = arguments.text(args, "prefix", default="", allow_empty=True,
                                    max_length=MAX_KEY_LENGTH)
            limit = arguments.integer(args, "limit", default=DEFAULT_LIST_LIMIT, minimum=1,
                                      maximum=MAX_LIST_LIMIT)
            return await self.list_blobs(prefix, limit)
        key = object_key(args)
        if op == "objects.get":
            found = await self.get_blob(key)
            if found is None:
                return None
            data, content_type = found
            return {"key": key, "data": base64.b64encode(data).decode("ascii"),
                    "content_type": content_type, "size": len(data)}
        if op == "objects.put":
            data = arguments.base64_bytes(args, "data")
            content_type = arguments.text(args, "content_type", default=DEFAULT_CONTENT_TYPE,
                                          max_length=255)
            await self.put_blob(key, data, content_type)
            return None
        # objects.delete
        return await self.delete_blob(key)
