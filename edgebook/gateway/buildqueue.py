"""A build queue in the registry's PostgreSQL database, for builders on other machines.

A gateway ``enqueue``s a build (NOTIFY ``edgebook_builds``); builders ``claim`` the oldest
queued job with ``SELECT ... FOR UPDATE SKIP LOCKED`` (so no job goes to two builders),
``heartbeat`` while they work, send ``progress`` events (NOTIFY ``edgebook_build_progress``)
and ``complete`` the job (NOTIFY ``edgebook_build_done`` with the job id). A job whose
builder stopped heartbeating for ``stale_after`` seconds is claimed again, at most
``max_attempts`` times in all; then it fails. ``wait`` follows one job to its result.

``key`` is computed by the caller (sha256 of the source hash, profile, SDK version and
toolchain): ``find_done(key)`` returns the result of a successful build with that key, so a
build runs once per key.

The table is created by the registry's migrations (pgregistry.MIGRATIONS), which ``open``
runs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from .pgregistry import (MIGRATIONS, RegistryUnavailable, connect, create_pool,
                         describe_target, is_unreachable, migrate, unavailable)
from .registry import RegistryError

log = logging.getLogger(__name__)

JOBS_CHANNEL = "edgebook_builds"
PROGRESS_CHANNEL = "edgebook_build_progress"
DONE_CHANNEL = "edgebook_build_done"
#: NOTIFY payloads must stay under 8000 bytes.
MAX_PAYLOAD = 7900
STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")


@dataclasses.dataclass
class Job:
    """A claimed build: what to build and how many times it was claimed (this one too)."""

    id: int
    endpoint: str
    revision: int | None
    key: str
    request: dict[str, Any]
    attempts: int


class PostgresBuildQueue:
    """Build jobs in PostgreSQL; open it with ``await PostgresBuildQueue.open(dsn)``.

    Pass ``pool=registry.pool`` to share the registry's connection pool (then ``aclose``
    leaves the pool open).
    """

    def __init__(self, dsn: str, *, pool=None, connect_timeout: float = 5.0,
                 stale_after: float = 60.0, max_attempts: int = 3, poll_interval: float = 5.0):
        self.dsn = dsn
        self.target = describe_target(dsn)
        self.pool = pool
        self._own_pool = pool is None
        self.connect_timeout = connect_timeout
        self.stale_after = stale_after
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self._jobs_conn = None
        self._jobs_signal = asyncio.Event()
        self._jobs_lock = asyncio.Lock()

    @classmethod
    async def open(cls, dsn: str, *, pool=None, connect_timeout: float = 5.0,
                   **options) -> PostgresBuildQueue:
        self = cls(dsn, pool=pool, connect_timeout=connect_timeout, **options)
        try:
            if self.pool is None:
                self.pool = await create_pool(dsn, timeout=connect_timeout)
            async with self.pool.acquire(timeout=connect_timeout) as conn:
                await migrate(conn, MIGRATIONS, target=self.target)
        except RegistryError:
            await self.aclose()
            raise
        except Exception as exc:
            await self.aclose()
            raise self._error(exc) from None
        return self

    def _error(self, exc: BaseException) -> RegistryError:
        if isinstance(exc, RegistryError):
            return exc
        if is_unreachable(exc):
            return unavailable(self.dsn, exc)
        return RegistryError(f"build queue error on {self.target}: {exc}")

    @contextlib.asynccontextmanager
    async def _conn(self, transaction: bool = True):
        if self.pool is None:
            raise RegistryUnavailable(f"the build queue at {self.target} is closed")
        try:
            async with asyncio.timeout(self.connect_timeout * 2):
                async with self.pool.acquire(timeout=self.connect_timeout) as conn:
                    if transaction:
                        async with conn.transaction():
                            yield conn
                    else:
                        yield conn
        except RegistryError:
            raise
        except Exception as exc:
            raise self._error(exc) from None

    # -- the gateway's side -----------------------------------------------------------------

    async def enqueue(self, endpoint: str, revision: int | None, key: str,
                      request: dict[str, Any]) -> int:
        async with self._conn() as conn:
            job_id = await conn.fetchval(
                """INSERT INTO build_jobs (endpoint, revision, key, request)
                   VALUES ($1, $2, $3, $4) RETURNING id""", endpoint, revision, key, request)
            await conn.execute("SELECT pg_notify($1, $2)", JOBS_CHANNEL, str(job_id))
        return job_id

    async def find_done(self, key: str) -> dict[str, Any] | None:
        """The result of the latest successful build with this key, or None."""
        async with self._conn(transaction=False) as conn:
            return await conn.fetchval(
                """SELECT result FROM build_jobs
                   WHERE key = $1 AND state = 'done' AND (result->>'ok')::boolean
                   ORDER BY finished DESC LIMIT 1""", key)

    async def get(self, job_id: int) -> dict[str, Any] | None:
        """The job's row as a dict (state, result, claimed_by, attempts...), or None."""
        async with self._conn(transaction=False) as conn:
            row = await conn.fetchrow("SELECT * FROM build_jobs WHERE id = $1", job_id)
        return dict(row) if row is not None else None

    async def cancel(self, job_id: int, reason: str = "cancelled") -> bool:
        """Cancel a job that has not finished; False if it had."""
        result = {"ok": False, "status": "cancelled", "reason": reason}
        async with self._conn() as conn:
            done = await conn.fetchval(
                """UPDATE build_jobs SET state = 'cancelled', result = $2, finished = now()
                   WHERE id = $1 AND state IN ('queued', 'running') RETURNING id""",
                job_id, result)
            if done is not None:
                await conn.execute("SELECT pg_notify($1, $2)", DONE_CHANNEL, str(job_id))
        return done is not None

    async def cancel_open(self, endpoint: str, reason: str = "cancelled") -> list[int]:
        """Cancel every unfinished job of ``endpoint`` (whichever gateway queued it); the
        ids cancelled."""
        result = {"ok": False, "status": "cancelled", "reason": reason}
        async with self._conn() as conn:
            ids = [row["id"] for row in await conn.fetch(
                """UPDATE build_jobs SET state = 'cancelled', result = $2, finished = now()
                   WHERE endpoint = $1 AND state IN ('queued', 'running') RETURNING id""",
                endpoint, result)]
            for job_id in ids:
                await conn.execute("SELECT pg_notify($1, $2)", DONE_CHANNEL, str(job_id))
        return sorted(ids)

    async def wait(self, job_id: int, timeout: float,
                   on_progress: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
        """The job's result once it finishes; progress events go to ``on_progress`` (a
        function or a coroutine function) meanwhile. ``TimeoutError`` after ``timeout``.

        Notifications wake it; it also reads the row right after LISTEN starts (a job that
        finished before is not missed) and every ``poll_interval`` seconds (a notification
        lost with a connection is not either)."""
        deadline = time.monotonic() + timeout
        finished = asyncio.Event()
        pending: set[asyncio.Task] = set()

        def relay(event: dict[str, Any]) -> None:
            try:
                outcome = on_progress(event)
                if inspect.isawaitable(outcome):
                    task = asyncio.ensure_future(outcome)
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            except Exception:
                log.exception("build progress callback failed")

        def on_notify(conn, pid, channel, payload) -> None:
            if channel == DONE_CHANNEL:
                if payload == str(job_id):
                    finished.set()
                return
            try:
                message = json.loads(payload)
            except ValueError:
                return
            if message.get("job") == job_id and on_progress is not None:
                relay(message.get("event") or {})

        conn = None
        try:
            try:
                conn = await connect(self.dsn, self.connect_timeout)
                await conn.add_listener(DONE_CHANNEL, on_notify)
                await conn.add_listener(PROGRESS_CHANNEL, on_notify)
            except Exception as exc:
                if conn is not None:
                    conn.terminate()
                    conn = None
                if not is_unreachable(exc):
                    raise self._error(exc) from None
                log.warning("cannot listen for build %d; polling instead", job_id)
            while True:
                row = await self.get(job_id)
                if row is None:
                    raise RegistryError(f"no build job {job_id}", kind="not_found")
                if row["state"] in FINISHED:
                    if pending:
                        await asyncio.wait(pending, timeout=1)
                    return row["result"] or {"ok": False, "status": row["state"]}
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"build job {job_id} did not finish within {timeout} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), min(remaining, self.poll_interval))
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
                conn.terminate()

    # -- the builder's side -----------------------------------------------------------------

    async def claim(self, worker_id: str) -> Job | None:
        """The oldest queued job (or one whose builder went silent), now running for
        ``worker_id``; None if there is none."""
        async with self._conn() as conn:
            # Jobs that went silent too often fail instead of being claimed again.
            given_up = await conn.fetch(
                """UPDATE build_jobs SET state = 'failed', finished = now(),
                       result = jsonb_build_object('ok', false, 'status', 'failed',
                           'reason', 'the builder stopped responding ' || attempts ||
                           ' time(s); giving up')
                   WHERE id IN (SELECT id FROM build_jobs
                                WHERE state = 'running' AND attempts >= $2
                                  AND heartbeat_at < now() - make_interval(secs => $1)
                                FOR UPDATE SKIP LOCKED)
                   RETURNING id""", float(self.stale_after), self.max_attempts)
            for row in given_up:
                await conn.execute("SELECT pg_notify($1, $2)", DONE_CHANNEL, str(row["id"]))
            row = await conn.fetchrow(
                """UPDATE build_jobs SET state = 'running', claimed_by = $1, claimed_at = now(),
                       heartbeat_at = now(), attempts = attempts + 1
                   WHERE id = (SELECT id FROM build_jobs
                               WHERE state = 'queued'
                                  OR (state = 'running'
                                      AND heartbeat_at < now() - make_interval(secs => $2))
                               ORDER BY id
                               FOR UPDATE SKIP LOCKED LIMIT 1)
                   RETURNING *""", worker_id, float(self.stale_after))
        if row is None:
            return None
        return Job(id=row["id"], endpoint=row["endpoint"], revision=row["revision"],
                   key=row["key"], request=row["request"], attempts=row["attempts"])

    async def heartbeat(self, job_id: int, worker_id: str | None = None) -> bool:
        """Say the builder still works on the job; False if the job is no longer its own
        (cancelled, finished, or claimed by another builder): stop building it."""
        async with self._conn(transaction=False) as conn:
            found = await conn.fetchval(
                """UPDATE build_jobs SET heartbeat_at = now()
                   WHERE id = $1 AND state = 'running'
                     AND ($2::text IS NULL OR claimed_by = $2) RETURNING id""",
                job_id, worker_id)
        return found is not None

    async def progress(self, job_id: int, event: dict[str, Any]) -> None:
        """Tell whoever waits for the job (``wait``): a compile line, a phase..."""
        async with self._conn(transaction=False) as conn:
            await conn.execute("SELECT pg_notify($1, $2)", PROGRESS_CHANNEL,
                               progress_payload(job_id, event))

    async def complete(self, job_id: int, result: dict[str, Any]) -> bool:
        """Record the outcome (``ok`` true: done, else failed); False if the job had already
        finished or was cancelled."""
        state = "done" if result.get("ok") else "failed"
        async with self._conn() as conn:
            found = await conn.fetchval(
                """UPDATE build_jobs SET state = $2, result = $3, finished = now()
                   WHERE id = $1 AND state IN ('queued', 'running') RETURNING id""",
                job_id, state, result)
            if found is not None:
                await conn.execute("SELECT pg_notify($1, $2)", DONE_CHANNEL, str(job_id))
        return found is not None

    async def recent_artifacts(self, seconds: float) -> list[str]:
        """The artifacts of builds that finished within ``seconds``: a deploy may be about
        to record them in a revision, so garbage collection keeps them."""
        async with self._conn(transaction=False) as conn:
            rows = await conn.fetch(
                """SELECT DISTINCT result->>'artifact' AS artifact FROM build_jobs
                   WHERE state = 'done' AND result ? 'artifact'
                     AND finished > now() - make_interval(secs => $1)""", float(seconds))
        return [row["artifact"] for row in rows if row["artifact"]]

    async def next_job_signal(self, timeout: float | None = None) -> bool:
        """Wait until a job is enqueued (True) or ``timeout`` (default ``poll_interval``)
        passes (False: poll anyway). A signal that came while the builder was busy is kept,
        so the loop ``claim``, else ``await next_job_signal()`` misses nothing."""
        timeout = self.poll_interval if timeout is None else timeout
        await self._ensure_jobs_listener()
        try:
            await asyncio.wait_for(self._jobs_signal.wait(), timeout)
        except TimeoutError:
            return False
        self._jobs_signal.clear()
        return True

    async def _ensure_jobs_listener(self) -> None:
        async with self._jobs_lock:
            if self._jobs_conn is not None and not self._jobs_conn.is_closed():
                return
            try:
                conn = await connect(self.dsn, self.connect_timeout)
                await conn.add_listener(JOBS_CHANNEL,
                                        lambda *args: self._jobs_signal.set())
            except Exception as exc:
                log.warning("cannot listen for build jobs on %s (%s); polling", self.target,
                            exc)
                return
            self._jobs_conn = conn
            self._jobs_signal.set()  # jobs may have come while nobody listened

    async def aclose(self) -> None:
        conn, self._jobs_conn = self._jobs_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            conn.terminate()
        pool, self.pool = self.pool, None
        if pool is not None and self._own_pool:
            try:
                await asyncio.wait_for(pool.close(), 2)
            except Exception:
                pool.terminate()


def progress_payload(job_id: int, event: dict[str, Any]) -> str:
    """``{"job": id, "event": event}`` as JSON under ``MAX_PAYLOAD`` bytes: long strings in
    the event are cut (keeping their end, where a compiler's last words are)."""
    payload = json.dumps({"job": job_id, "event": event})
    for limit in (4000, 1000, 200, 40):
        if len(payload.encode()) <= MAX_PAYLOAD:
            return payload
        payload = json.dumps({"job": job_id, "event": _cut(event, limit)})
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    return json.dumps({"job": job_id, "event": {"truncated": True}})


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"[{len(value) - limit} characters cut]…" + value[-limit:]
    if isinstance(value, dict):
        return {k: _cut(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut(v, limit) for v in value[-limit:]]
    return value
