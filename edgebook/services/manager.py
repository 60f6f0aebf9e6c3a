"""``ServiceManager``: the configured service instances and the one entry point for calls.

The gateway makes one manager per data dir. It holds ``{name: connector}``; the control plane
puts and removes instances as the registry changes, the worker runtime hands it every
``service_call`` frame together with the endpoint's bindings, and it answers with a complete
``service_reply`` frame. Nothing here is global: two managers never share a pool.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .base import CallContext, Connector, Settings
from .errors import ServiceConfigError, ServiceError
from .secrets import mask

log = logging.getLogger(__name__)

#: Kind name -> "module:Class", imported on first use so a kind's client library is only
#: needed when a service of that kind exists.
KINDS: dict[str, str] = {
    "sqlite": "edgebook.services.sqlite:SQLiteConnector",
    "postgres": "edgebook.services.postgres:PostgresConnector",
    "redis": "edgebook.services.redis:RedisConnector",
    "s3": "edgebook.services.s3:S3Connector",
    "files": "edgebook.services.files:FilesConnector",
}

#: Built-in instances that exist with no configuration and every endpoint may use.
BUILTIN: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("sqlite", {"path": "services/default.sqlite3"}),
    "files": ("files", {"path": "services/files"}),
}

SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

_LOG_LEVELS = {"unavailable": logging.WARNING, "timeout": logging.WARNING,
               "internal": logging.ERROR}


def connector_class(kind: str) -> type[Connector]:
    if kind not in KINDS:
        raise ServiceConfigError(f"unknown service kind '{kind}'; known kinds: "
                                 + ", ".join(sorted(KINDS)))
    module, _, cls = KINDS[kind].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise ServiceConfigError(
            f"the {kind} service needs the '{exc.name}' package; install edgebook[services]"
        ) from None


class ServiceManager:
    """Service instances by name, their pooled connectors, and the calls to them.

    ``data_dir`` is where the embedded services keep their files (``services/`` in it).
    Timeouts are in seconds: ``connect_timeout`` bounds reaching a server (a server that is
    down fails calls within about this long), ``call_timeout`` bounds one call unless the
    service's config sets ``timeout``, ``transaction_timeout`` bounds how long a request may
    keep a transaction open.
    """

    def __init__(self, data_dir: str | Path, *, connect_timeout: float = 2.0,
                 call_timeout: float = 10.0, transaction_timeout: float = 60.0,
                 builtin: bool = True):
        self.settings = Settings(Path(data_dir), connect_timeout=connect_timeout,
                                 call_timeout=call_timeout,
                                 transaction_timeout=transaction_timeout)
        self._connectors: dict[str, Connector] = {}
        self._builtin: set[str] = set()
        # (endpoint, request id) -> the services where that request holds a transaction
        self._transactions: dict[tuple[str, str], set[str]] = {}
        if builtin:
            for name, (kind, config) in BUILTIN.items():
                self._install(name, kind, config)
                self._builtin.add(name)

    # configuration -----------------------------------------------------------------------
    @staticmethod
    def check(name: str, kind: str, config: dict[str, Any] | None) -> dict[str, Any]:
        """Validate a service definition before storing it; returns the config with
        defaults filled in. Raises ``ServiceConfigError`` with a message for the user."""
        if not isinstance(name, str) or not SERVICE_NAME.match(name):
            raise ServiceConfigError(
                "a service name is 1-63 letters, digits, '_', '-' or '.', starting with a "
                "letter or digit")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ServiceConfigError("a service config is a JSON object")
        return connector_class(kind).check_config(config, name)

    async def put(self, name: str, kind: str, config: dict[str, Any] | None) -> None:
        """Create or replace an instance. A replaced one is closed (its open transactions
        roll back); a built-in name given a config stops being built-in."""
        config = self.check(name, kind, config)
        old = self._connectors.get(name)
        self._install(name, kind, config)
        self._builtin.discard(name)
        if old is not None:
            await self._close_connector(old)

    async def remove(self, name: str) -> None:
        """Forget an instance (a built-in one comes back with its default config)."""
        old = self._connectors.pop(name, None)
        self._builtin.discard(name)
        if name in BUILTIN:
            self._install(name, *BUILTIN[name])
            self._builtin.add(name)
        if old is not None:
            await self._close_connector(old)

    def _install(self, name: str, kind: str, config: dict[str, Any]) -> None:
        cls = connector_class(kind)
        self._connectors[name] = cls(name, cls.check_config(config, name), self.settings)

    def names(self) -> list[str]:
        return sorted(self._connectors)

    def describe(self, name: str) -> dict[str, Any]:
        """``{"name", "kind", "config", "builtin"}`` with every secret masked."""
        connector = self._get(name)
        return {"name": name, "kind": connector.kind,
                "config": mask(connector.config, connector.secret_keys),
                "builtin": name in self._builtin}

    def _get(self, name: str) -> Connector:
        try:
            return self._connectors[name]
        except KeyError:
            raise KeyError(f"no service named '{name}'") from None

    # calls -------------------------------------------------------------------------------
    async def call(self, endpoint: str, bindings: Iterable[str], frame: dict) -> dict:
        """Run one ``service_call`` frame for ``endpoint`` and return the ``service_reply``
        frame (``type``, ``request_id``, ``call_id``, ``ok``, ``result`` or ``error``).
        Never raises for a failed call: failures are replies."""
        reply: dict[str, Any] = {"type": "service_reply", "request_id": frame.get("request_id"),
                                 "call_id": frame.get("call_id")}
        try:
            result = await self._call(endpoint, bindings, frame)
        except ServiceError as exc:
            log.log(_LOG_LEVELS.get(exc.kind, logging.INFO),
                    "service call %s %s from '%s' failed (%s): %s", frame.get("service"),
                    frame.get("op"), endpoint, exc.kind, exc.log_message or exc.message)
            reply["ok"] = False
            reply["error"] = exc.to_payload()
        except Exception:
            log.exception("service call %s %s from '%s' raised", frame.get("service"),
                          frame.get("op"), endpoint)
            reply["ok"] = False
            reply["error"] = {"kind": "internal",
                              "message": "the gateway failed to run this service call; "
                                         "see the gateway log"}
        else:
            reply["ok"] = True
            reply["result"] = result
        return reply

    async def _call(self, endpoint: str, bindings: Iterable[str], frame: dict) -> Any:
        name, op, args = frame.get("service"), frame.get("op"), frame.get("args")
        if not isinstance(name, str) or not name:
            raise ServiceError("bad_request", "a service call needs a 'service' name")
        if not isinstance(op, str) or not op:
            raise ServiceError("bad_request", "a service call needs an 'op'")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ServiceError("bad_request", "a service call's 'args' must be an object")
        connector = self._connectors.get(name)
        bound = name in bindings
        if connector is None or not (bound or name in self._builtin):
            raise self._not_bound(endpoint, name, bound)
        if op not in connector.ops:
            raise ServiceError("bad_request",
                               f"service '{name}' ({connector.kind}) has no operation '{op}'; "
                               f"it has {', '.join(sorted(connector.ops))}")
        request_id = frame.get("request_id")
        ctx = CallContext(endpoint, request_id if isinstance(request_id, str) else "")
        timeout = connector.call_timeout
        try:
            async with asyncio.timeout(timeout):
                result = await connector.call(op, args, ctx)
        except TimeoutError:
            raise ServiceError("timeout", f"{connector.kind} service '{name}' did not answer "
                                          f"within {timeout:g} s") from None
        key = (endpoint, ctx.request_id)
        if op == "db.begin":
            self._transactions.setdefault(key, set()).add(name)
        elif op in ("db.commit", "db.rollback") \
                and not connector.has_transactions(endpoint, ctx.request_id):
            self._forget_transaction(key, name)
        return result

    @staticmethod
    def _not_bound(endpoint: str, name: str, bound: bool) -> ServiceError:
        if bound:
            return ServiceError("not_bound", f"endpoint '{endpoint}' is bound to service "
                                             f"'{name}', but no such service exists")
        return ServiceError("not_bound", f"endpoint '{endpoint}' is not bound to service "
                                         f"'{name}'; bind it with --service {name}")

    def _forget_transaction(self, key: tuple[str, str], name: str) -> None:
        names = self._transactions.get(key)
        if names is not None:
            names.discard(name)
            if not names:
                del self._transactions[key]

    def has_open_transaction(self, endpoint: str, request_id: str) -> bool:
        return (endpoint, request_id) in self._transactions

    async def release_request(self, endpoint: str, request_id: str) -> None:
        """The response for ``endpoint``'s ``request_id`` was sent (or the request failed):
        roll back any transaction it left open. Cheap when it has none; safe to call more
        than once. Another endpoint's request with the same id is not touched."""
        names = self._transactions.pop((endpoint, request_id), None)
        if not names:
            return
        for name in names:
            connector = self._connectors.get(name)
            if connector is not None:
                try:
                    await connector.release(endpoint, request_id)
                except ServiceError as exc:
                    log.warning("rolling back request %s on '%s' failed: %s", request_id,
                                name, exc.log_message or exc.message)

    # admin -------------------------------------------------------------------------------
    async def test(self, name: str) -> dict[str, Any]:
        """Reach the service once: ``{"ok": true, "latency_ms", ...facts}`` or
        ``{"ok": false, "error": {"kind", "message", "detail"}}`` (``detail``: the
        cause, e.g. the driver's connection error). Raises ``KeyError`` for an
        unknown name."""
        connector = self._get(name)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(connector.call_timeout):
                facts = await connector.test()
        except TimeoutError:
            error = ServiceError("timeout", f"{connector.kind} service '{name}' did not "
                                            f"answer within {connector.call_timeout:g} s")
            return {"ok": False, "error": error.to_payload()}
        except ServiceError as exc:
            log.info("connection test of '%s' failed: %s", name,
                     exc.log_message or exc.message)
            # the admin API's caller owns the service: it gets the cause, not just the verdict
            return {"ok": False, "error": {**exc.to_payload(),
                                           "detail": exc.log_message or exc.message}}
        latency = (time.perf_counter() - started) * 1000
        return {"ok": True, "latency_ms": round(latency, 3), **facts}

    async def close(self) -> None:
        """Roll back open transactions and close every pool."""
        connectors, self._connectors = list(self._connectors.values()), {}
        self._transactions.clear()
        for connector in connectors:
            await self._close_connector(connector)

    async def _close_connector(self, connector: Connector) -> None:
        try:
            await connector.close()
        except Exception:
            log.exception("closing service '%s' failed", connector.name)
