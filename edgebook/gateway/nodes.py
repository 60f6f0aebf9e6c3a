"""Who serves what in a scale-out deployment: each gateway's row in the ``gateways`` table.

Every gateway of a shared registry writes, after each reconcile and every ``HEARTBEAT``
seconds, the registry version it serves, the revision of each endpoint its workers run,
and whether it is ready. These rows are not registry changes (no version, no NOTIFY): they
are reports. ``GET /api/cluster`` shows them; garbage collection keeps every revision some
gateway seen within ``FRESH`` seconds still runs. A gateway that stops removes its row.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

HEARTBEAT = 10.0
#: A row older than this (six missed heartbeats) is a gateway that died without saying so.
FRESH = 60.0


class NodeTable:
    """The ``gateways`` table, through the registry's connection pool (whose connections
    encode and decode ``jsonb`` as Python values)."""

    def __init__(self, pool: Any, *, timeout: float = 5.0):
        self.pool = pool
        self.timeout = timeout

    async def report(self, node_id: str, *, role: str, url: str, admin_url: str,
                     served_version: int, serving: dict[str, str], ready: bool,
                     reason: str) -> None:
        async with self.pool.acquire(timeout=self.timeout) as conn:
            await conn.execute(
                """INSERT INTO gateways (id, role, url, admin_url, served_version, serving,
                                         ready, reason, seen)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
                   ON CONFLICT (id) DO UPDATE SET role = $2, url = $3, admin_url = $4,
                       served_version = $5, serving = $6, ready = $7, reason = $8,
                       seen = now()""",
                node_id, role, url, admin_url, served_version, dict(serving), ready,
                reason, timeout=self.timeout)

    async def forget(self, node_id: str) -> None:
        async with self.pool.acquire(timeout=self.timeout) as conn:
            await conn.execute("DELETE FROM gateways WHERE id = $1", node_id,
                               timeout=self.timeout)

    async def list(self) -> list[dict[str, Any]]:
        """Every gateway seen within ``FRESH`` seconds, with how long ago."""
        async with self.pool.acquire(timeout=self.timeout) as conn:
            rows = await conn.fetch(
                """SELECT id, role, url, admin_url, served_version, serving,
                          ready, reason, extract(epoch FROM started) AS started,
                          extract(epoch FROM now() - seen) AS seen_ago
                   FROM gateways WHERE seen > now() - make_interval(secs => $1)
                   ORDER BY id""", FRESH, timeout=self.timeout)
        return [{**dict(row), "serving": dict(row["serving"] or {}),
                 "started": float(row["started"]), "seen_ago": round(float(row["seen_ago"]), 3)}
                for row in rows]

    async def served_revisions(self) -> set[tuple[str, int]]:
        """(endpoint, revision) that some live gateway runs."""
        return {(name, int(revision)) for node in await self.list()
                for name, revision in node["serving"].items() if str(revision).isdigit()}
