"""A small client for ServiceManager in tests: build frames, unwrap replies."""

from __future__ import annotations

import itertools

from edgebook.services import ServiceManager


class CallFailed(Exception):
    def __init__(self, error: dict):
        super().__init__(f"{error['kind']}: {error['message']}")
        self.kind = error["kind"]
        self.message = error["message"]


class Caller:
    """Calls services as one endpoint with fixed bindings; ``request_id`` can be changed."""

    def __init__(self, manager: ServiceManager, endpoint: str = "ep",
                 bindings: set[str] | None = None, request_id: str = "req-1"):
        self.manager = manager
        self.endpoint = endpoint
        self.bindings = bindings or set()
        self.request_id = request_id
        self._ids = itertools.count(1)

    def frame(self, service: str, op: str, args: dict | None = None) -> dict:
        return {"type": "service_call", "request_id": self.request_id,
                "call_id": next(self._ids), "service": service, "op": op, "args": args or {}}

    async def reply(self, service: str, op: str, args: dict | None = None) -> dict:
        frame = self.frame(service, op, args)
        reply = await self.manager.call(self.endpoint, self.bindings, frame)
        assert reply["type"] == "service_reply"
        assert reply["call_id"] == frame["call_id"]
        assert reply["request_id"] == self.request_id
        return reply

    async def __call__(self, service: str, op: str, args: dict | None = None):
        reply = await self.reply(service, op, args)
        if not reply["ok"]:
            raise CallFailed(reply["error"])
        return reply["result"]

    async def error(self, service: str, op: str, args: dict | None = None) -> CallFailed:
        reply = await self.reply(service, op, args)
        assert not reply["ok"], f"expected a failure, got {reply['result']!r}"
        assert set(reply["error"]) == {"kind", "message"}
        return CallFailed(reply["error"])
