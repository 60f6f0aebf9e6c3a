"""The connector interface: one configured service instance with its pooled clients."""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .errors import ServiceError


@dataclasses.dataclass(frozen=True)
class CallContext:
    """Who is calling: the endpoint and the request the call belongs to."""

    endpoint: str
    request_id: str


@dataclasses.dataclass(frozen=True)
class Settings:
    """Limits shared by every connector of one ``ServiceManager``."""

    data_dir: Path
    connect_timeout: float = 2.0
    call_timeout: float = 10.0
    transaction_timeout: float = 60.0


class Connector(abc.ABC):
    """A service instance: owns its pool, runs operations, maps failures to ``ServiceError``.

    Pools are created on first use, so a server that is down when the gateway starts only
    fails the calls that need it. Every method runs on the gateway's event loop and never
    blocks it.
    """

    #: The service kind, as in the registry (``sqlite``, ``postgres``, ...).
    kind: ClassVar[str]
    #: The operations this kind answers, e.g. ``{"db.query", ...}``.
    ops: ClassVar[frozenset[str]]
    #: Config keys whose values are secrets (masked by ``describe``).
    secret_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, config: dict[str, Any], settings: Settings):
        self.name = name
        self.config = config
        self.settings = settings

    @classmethod
    @abc.abstractmethod
    def check_config(cls, config: dict[str, Any], name: str) -> dict[str, Any]:
        """The config with defaults filled in; ``ServiceConfigError`` says what is wrong."""

    @property
    def call_timeout(self) -> float:
        return float(self.config.get("timeout") or self.settings.call_timeout)

    @abc.abstractmethod
    async def call(self, op: str, args: dict[str, Any], ctx: CallContext) -> Any:
        """Run ``op`` and return its JSON result, or raise ``ServiceError``."""

    @abc.abstractmethod
    async def test(self) -> dict[str, Any]:
        """Reach the server once; returns facts worth showing (e.g. its version)."""

    async def release(self, endpoint: str, request_id: str) -> None:
        """``endpoint``'s request ended: give back whatever it still holds (open
        transactions)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every connection; the connector is not used again."""

    def describe_target(self) -> str:
        """Where the service lives, without secrets, for messages and logs."""
        return self.name

    def unavailable(self, detail: str) -> ServiceError:
        return ServiceError(
            "unavailable", f"{self.kind} service '{self.name}' is not reachable",
            log_message=f"{self.kind} service '{self.name}' at {self.describe_target()}: "
                        f"{detail}")


# -- what the document store needs from the connectors it runs on ----------------------------

class StatementRunner(Protocol):
    """A SQL connector as documents.py uses it (see sql.SQLConnector)."""

    kind: str
    dialect: Any  # the connector's SQL dialect: placeholders, JSON access, table DDL

    async def statement(self, ctx: CallContext, sql: str, params: list, *,
                        fetch: bool = True) -> Any: ...


class BlobStore(Protocol):
    """An object store as documents.py uses it (see objects.ObjectConnector)."""

    kind: str

    async def get_blob(self, key: str) -> tuple[bytes, str] | None: ...

    async def put_blob(self, key: str, data: bytes, content_type: str) -> None: ...

    async def delete_blob(self, key: str) -> bool: ...

    async def blob_exists(self, key: str) -> bool: ...

    async def list_blobs(self, prefix: str, limit: int = ...) -> list[dict]: ...
