"""Server-sent events from the admin API's ``/api/events``, parsed incrementally.

One parser for every reader of the stream (the kernel's ``EventStream``, the Jupyter
server's event relay): feed it bytes as they arrive, in pieces of any size, and it returns
the events completed so far, each the JSON object of its ``data:`` lines. Blocks without
data (the gateway's ``: heartbeat`` comments) are skipped; a block whose data is not JSON is
logged and skipped.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)


class EventParser:
    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """The events whose blocks ``chunk`` completes, in order."""
        self._buffer += chunk
        *blocks, self._buffer = self._buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        events = []
        for block in blocks:
            data = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
            if not data:
                continue
            try:
                event = json.loads(b"\n".join(data))
            except ValueError:
                log.warning("ignoring a malformed event: %r", b"\n".join(data)[:200])
                continue
            if isinstance(event, dict):
                events.append(event)
        return events
