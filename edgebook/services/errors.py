"""The one failure type of a service call, with the error kinds of the protocol."""

from __future__ import annotations

#: The ``error.kind`` values a ``service_reply`` may carry (docs/protocol.md).
ERROR_KINDS = frozenset({"not_bound", "unavailable", "timeout", "bad_request", "database",
                         "redis", "storage", "internal"})


class ServiceError(Exception):
    """A service call that failed: ``kind`` and ``message`` go to the handler.

    ``log_message`` is detail for the gateway's log only (driver messages, hosts); it never
    reaches the worker.
    """

    def __init__(self, kind: str, message: str, *, log_message: str | None = None):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown service error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.log_message = log_message

    def to_payload(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


class ServiceConfigError(ValueError):
    """A service configuration that cannot work; the message says what to fix."""
