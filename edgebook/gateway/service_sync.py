"""The gateway's services: the pooled connectors (``ServiceManager``) kept in step with
the registry, each endpoint's bindings, and the service calls workers make."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..services import BUILTIN, ServiceConfigError, ServiceManager
from .registry import Registry, ServiceRecord
from .spec import NAME_RE, DeployRejected
from .timing import RequestTiming, call_size

log = logging.getLogger(__name__)


class ServiceBindings:
    """Services as the registry stores them, opened in a ``ServiceManager``.

    ``changed`` is awaited after every change (the primary tells its followers).
    """

    def __init__(self, registry: Registry, manager: ServiceManager, *,
                 changed: Callable[[], Awaitable[None]] | None = None):
        self.registry = registry
        self.manager = manager
        self._changed = changed
        self._configs: dict[str, tuple[str, dict]] = {}  # what the manager has, by name
        #: The timings of requests in flight, by request id (the data plane adds and removes
        #: them), so each service call is counted against its request.
        self.timings: dict[str, RequestTiming] = {}
        #: Each endpoint's bound services, read from the registry once: a service call
        #: costs no registry query. Only a deploy or a sync changes them (``forget``).
        self._bindings: dict[str, frozenset[str]] = {}

    async def sync(self) -> None:
        """Make the manager match the registry (at start, and on followers). No I/O:
        connections are opened on first use."""
        self._bindings.clear()
        stored = {record.name: record for record in self.registry.services()}
        for name in set(self._configs) - set(stored):
            await self.manager.remove(name)
            del self._configs[name]
        for name, record in stored.items():
            if self._configs.get(name) == (record.kind, record.config):
                continue
            try:
                await self.manager.put(name, record.kind, record.config)
            except ServiceConfigError as exc:
                log.warning("service %s is not usable: %s", name, exc)
                continue
            self._configs[name] = (record.kind, record.config)

    def known(self) -> set[str]:
        """Every usable service name, stored or built in."""
        return set(self.manager.names())

    def to_bind(self, names: Sequence[str]) -> list[str]:
        """The names that need a binding: built-in services (the embedded SQLite database,
        local files) are open to every endpoint unless the user redefined them."""
        stored = {record.name for record in self.registry.services()}
        return [name for name in names if name in stored]

    async def call(self, endpoint: str, call: dict[str, Any]) -> dict[str, Any]:
        """A worker's service call, checked against the endpoint's bindings; its duration
        goes to the request's timing when the data plane measures that request."""
        started = time.perf_counter()
        bound = self._bindings.get(endpoint)
        if bound is None:
            bound = self._bindings[endpoint] = frozenset(self.registry.bindings(endpoint))
        reply = await self.manager.call(endpoint, bound, call)
        timing = self.timings.get(call.get("request_id"))  # type: ignore[arg-type]
        if timing is not None:
            op = str(call.get("op") or "?")
            timing.service_call(op, started, time.perf_counter() - started,
                                call_size(op, call.get("args"), reply))
        return reply

    def forget(self, endpoint: str) -> None:
        """The endpoint's bindings changed (or it is gone): read them again on next use."""
        self._bindings.pop(endpoint, None)

    def has_open_transaction(self, endpoint: str, request_id: str) -> bool:
        return self.manager.has_open_transaction(endpoint, request_id)

    async def release_request(self, endpoint: str, request_id: str) -> None:
        await self.manager.release_request(endpoint, request_id)

    async def put(self, name: str, kind: str, config: dict[str, Any]) -> ServiceRecord:
        if not NAME_RE.match(name):
            raise DeployRejected(400, "invalid_name", f"service name {name!r} is not valid")
        if name in BUILTIN and name not in {r.name for r in self.registry.services()}:
            # Endpoints use a built-in service without a binding; a stored service of that
            # name would need one, silently cutting off every endpoint that relied on it.
            # (A registry that already stores one keeps it, and may update it.)
            raise DeployRejected(409, "builtin_service",
                                 f"service name {name!r} is built in and open to every "
                                 "endpoint; register your service under another name and "
                                 "bind it with --service")
        if not isinstance(config, dict):
            raise DeployRejected(400, "invalid_config", "service config must be an object")
        try:
            self.manager.check(name, kind, config)
        except ServiceConfigError as exc:
            raise DeployRejected(400, "invalid_config", str(exc)) from None
        record = await self.registry.put_service(ServiceRecord(name=name, kind=kind, config=config))
        await self._after_change()
        return record

    async def delete(self, name: str) -> None:
        await self.registry.delete_service(name)
        await self._after_change()

    def describe(self) -> list[dict[str, Any]]:
        """Every usable service, stored or built in, with secrets masked."""
        shown = [record.to_public_dict() for record in self.registry.services()]
        stored = {s["name"] for s in shown}
        for name in self.manager.names():
            if name not in stored:
                shown.append({**self.manager.describe(name), "builtin": True})
        return shown

    async def test(self, name: str) -> dict[str, Any]:
        if name not in self.manager.names():
            self.registry.get_service(name)  # NotFoundError: 404
            return {"ok": False, "error": {"kind": "bad_request",
                                           "message": f"service {name!r} is not usable"}}
        return await self.manager.test(name)

    async def close(self) -> None:
        await self.manager.close()

    async def _after_change(self) -> None:
        await self.sync()
        if self._changed is not None:
            await self._changed()
