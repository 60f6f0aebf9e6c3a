"""The one error shape every part of edgebook sends to clients."""

from __future__ import annotations

import json


class GatewayError(Exception):
    """An error answered to a client: a status, a short type, a message for the client.

    ``log_message`` is the detail for the gateway's own log; it never reaches the client.
    """

    def __init__(self, status: int, error_type: str, message: str, *,
                 log_message: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.log_message = log_message
        self.headers = headers or {}

    def body(self, request_id: str | None = None) -> bytes:
        return error_body(self.message, self.error_type, request_id)


def error_body(message: str, error_type: str, request_id: str | None = None) -> bytes:
    """``{"error": ..., "error_type": ..., "request_id": ...}`` as JSON bytes."""
    payload = {"error": message, "error_type": error_type}
    if request_id is not None:
        payload["request_id"] = request_id
    return json.dumps(payload).encode()
