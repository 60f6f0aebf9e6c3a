"""The ``Server-Timing`` header as edgebook's gateway writes it and its readers read it:
the gateway's phases in order (``route``, ``recv``, ``queue``, ``worker``), then one metric
per service call (``db;desc="db.query";dur=…``, with ``rows=n`` or ``bytes=n`` where the
gateway knows what the call moved) and ``total``."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Gateway phases, in the order they happen; service calls happen inside ``worker``.
PHASES = ("route", "recv", "queue", "worker")
_ENTRY = re.compile(r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)((?:\s*;\s*[^,;]*)*)\s*(?:,|$)')
_PARAM = re.compile(r'\s*;\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')


@dataclass(frozen=True)
class Entry:
    """One ``Server-Timing`` metric: ``name``, ``duration_ms`` (None if absent), ``desc``;
    a service call's ``rows`` or ``bytes`` when the gateway sent them."""

    name: str
    duration_ms: float | None
    desc: str = ""
    rows: int | None = None
    bytes: int | None = None

    @property
    def size(self) -> str:
        """``3 rows`` / ``1,024 bytes``, or empty."""
        if self.rows is not None:
            return f"{self.rows:,} row{'' if self.rows == 1 else 's'}"
        if self.bytes is not None:
            return f"{self.bytes:,} byte{'' if self.bytes == 1 else 's'}"
        return ""


def parse_server_timing(value: str | None) -> list[Entry]:
    """The metrics of a ``Server-Timing`` header value (malformed parts are skipped)."""
    entries: list[Entry] = []
    if not value:
        return entries
    for match in _ENTRY.finditer(value):
        name, params = match.group(1), match.group(2) or ""
        if not name:
            continue
        duration, desc, sizes = None, "", {}
        for key, raw in _PARAM.findall(params):
            raw = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
            key = key.lower()
            if key == "dur":
                try:
                    duration = float(raw)
                except ValueError:
                    duration = None
            elif key == "desc":
                desc = raw
            elif key in ("rows", "bytes") and raw.isdigit():
                sizes[key] = int(raw)
        entries.append(Entry(name, duration, desc, **sizes))
    return entries
