"""Scale-out: many gateways, one PostgreSQL registry, one artifact store, a build queue.

A gateway started with ``--registry postgresql://...`` joins the others that use that
database. There is no cluster protocol of our own; PostgreSQL carries it:

- the registry (pgregistry.py) keeps a mirror of the database in memory and follows the
  change feed (``LISTEN``); every change calls ``ClusterNode.changed``, which reconciles
  this gateway's supervisor with the registry: the live revision of every endpoint runs
  here, fetched by digest from the artifact store (verified, cached locally) when this
  machine lacks it;
- a deploy on any gateway puts a build job in the queue (buildqueue.py); a process with the
  builder role (``BuilderLoop``) claims it, builds once, uploads the binary by its sha256
  and completes the job; the gateway that took the deploy relays the build's progress to
  its client, activates the revision and sets it live, and the change feed tells the rest;
- while PostgreSQL is unreachable every gateway keeps serving what it serves (the mirror
  answers reads, the supervisor keeps its workers); writes answer 503. While the artifact
  store is unreachable the old revision keeps serving and the fetch retries with backoff;
  the endpoint's ``node`` status says ``artifact_fetch_failed``.

``ready()`` is what ``/readyz`` reports: the first sync is done and every endpoint that
should serve here serves the registry's live revision.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from .._version import __version__
from ..artifacts import ArtifactCache, ArtifactCorrupt, ArtifactError, ArtifactNotFound
from ..artifacts import collect as collect_artifacts
from ..artifacts import to_keep
from ..build.builder import BuildRequest
from ..diagnostics import Diagnostic
from .builds import progress_fields
from .nodes import HEARTBEAT, NodeTable
from .tasks import stray_cancel, watch_task
from .views import jsonable

log = logging.getLogger(__name__)

#: Seconds between fetch attempts of an artifact the store could not give.
FETCH_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
#: How long a gateway waits for a queued build before giving up on answering (the build
#: goes on; the endpoint's state shows its end).
BUILD_WAIT = 1800.0
#: Artifacts kept per endpoint besides the live one: the revisions a gateway still catching
#: up may run, and what a rollback needs.
KEEP_REVISIONS = 5
#: Artifacts of builds finished this recently are kept whatever the registry says (a deploy
#: between the upload and its revision being recorded), and the least time between sweeps.
GC_GRACE = float(os.environ.get("EDGEBOOK_GC_GRACE", 3600.0))
GC_INTERVAL = float(os.environ.get("EDGEBOOK_GC_INTERVAL", 60.0))


def process_id() -> str:
    """This process among the others sharing the registry: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def revisions_to_keep(record: Any, revisions: list[Any], running: set[int]) -> list[Any]:
    """Of an endpoint's revisions (newest first), those to keep: the last
    ``KEEP_REVISIONS``, the live one, and any a gateway runs."""
    return [revision for index, revision in enumerate(revisions)
            if index < KEEP_REVISIONS or revision.number == record.live_revision
            or revision.number in running]


def queue_key(source: str, deps: list[str], profile: str) -> str:
    """The queue's name for a build: equal keys build interchangeable binaries on one
    builder image (the builder adds its toolchain to its own cache key)."""
    material = json.dumps({"source": source, "deps": sorted(deps), "profile": profile,
                           "edgebook": __version__}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


class QueuedBuild:
    """A build done elsewhere, as the deploy flow reads a build result."""

    def __init__(self, result: dict[str, Any], binary: str | None):
        self.ok = bool(result.get("ok"))
        self.status = result.get("status") or ("ok" if self.ok else "failed")
        self.binary = binary
        self.content_hash = result.get("content_hash")
        self.artifact = result.get("artifact")
        self.cached = bool(result.get("cached"))
        self.diagnostics = [Diagnostic.from_dict(d) if isinstance(d, dict) else d
                            for d in result.get("diagnostics") or []]
        self.duration = result.get("duration") or 0.0
        self.profile = result.get("profile") or "dev"
        self.log = result.get("log") or result.get("reason") or ""
        self.builder = result.get("builder")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "content_hash": self.content_hash,
                "artifact": self.artifact, "cached": self.cached,
                "diagnostics": [jsonable(d) for d in self.diagnostics], "duration": self.duration,
                "profile": self.profile, "log": self.log, "builder": self.builder}


class ClusterNode:
    """One gateway's part in a scale-out deployment (see the module docstring)."""

    def __init__(self, gateway: Any, queue: Any, cache: ArtifactCache, *, serves: bool = True):
        self.gateway = gateway
        self.queue = queue
        self.cache = cache
        self.serves = serves
        #: The registry version this gateway's supervisor matches (after a full reconcile).
        self.served_version = 0
        self.synced = asyncio.Event()
        #: Per endpoint, what went wrong here (artifact fetches), for the admin view.
        self.status: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._failures: dict[str, int] = {}
        self.node_id = process_id()
        self._fetched = False  # a binary came into the cache since it was last pruned
        self.nodes: NodeTable | None = None  # set once the registry is open
        self._report = asyncio.Event()
        self._reporter: asyncio.Task | None = None
        self._warm: asyncio.Task | None = None
        self._stopped = False

    # -- following the registry -----------------------------------------------------------

    def start(self) -> None:
        self._warm = asyncio.ensure_future(self.cache.store.warm())
        self._wake.set()
        self._task = asyncio.ensure_future(self._run())
        watch_task(self._task, "following the registry", lambda: self._stopped)
        if self.nodes is not None:
            self._reporter = asyncio.ensure_future(self._report_loop())
            watch_task(self._reporter, "reporting to the gateways table",
                       lambda: self._stopped)

    def changed(self, version: int | None = None) -> None:
        """The registry moved (called by its change feed): reconcile soon."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopped = True
        if self._retry is not None:
            self._retry.cancel()
        for task in (self._task, self._reporter, self._warm):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.nodes is not None:
            try:  # gone, not silent: garbage collection need not wait for the row to age
                await asyncio.wait_for(self.nodes.forget(self.node_id), 5)
            except Exception as exc:
                log.info("could not remove this gateway's row: %s", exc)

    def _runtime(self, name: str) -> dict[str, Any]:
        """The supervisor's view of ``name`` here (``revision``, ``state``); {} if none."""
        state = self.gateway.supervisor_state(name)
        return state if isinstance(state, dict) else {}

    def serving(self) -> dict[str, str]:
        """The revision each endpoint's workers run here."""
        out = {}
        for name in self.gateway.supervisor.names():
            state = self._runtime(name)
            if state.get("revision") and state.get("state") in ("running", "crash_looping",
                                                                 "starting", "draining"):
                out[name] = str(state["revision"])
        return out

    async def _report_loop(self) -> None:
        """Tell the ``gateways`` table what this gateway serves: after every reconcile and
        every ``HEARTBEAT`` seconds (nodes.py). A registry that is down is simply not told."""
        gateway = self.gateway
        while True:
            try:
                await asyncio.wait_for(self._report.wait(), HEARTBEAT)
            except TimeoutError:
                pass
            self._report.clear()
            ready, reason = gateway.ready()
            try:
                await self.nodes.report(
                    self.node_id, role=gateway.config.role, url=gateway.url,
                    admin_url=getattr(gateway, "admin_url", ""),
                    served_version=self.served_version, serving=self.serving(),
                    ready=ready, reason=reason)
            except asyncio.CancelledError:
                if not stray_cancel():
                    raise
                log.warning("gateway report interrupted; the next one follows")
            except Exception as exc:
                log.debug("gateway report not written: %s", exc)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                if not stray_cancel():
                    raise
                log.warning("reconciling with the registry was interrupted; retrying")
                self._schedule_retry(0.5)
            except Exception:
                log.exception("reconciling with the registry failed; retrying")
                self._schedule_retry(1.0)

    async def reconcile(self) -> None:
        """Make this gateway's supervisor serve what the registry says is live."""
        gateway = self.gateway
        version = gateway.registry.generation()
        await gateway.services.sync()
        if not self.serves:
            self.served_version = version
            self.synced.set()
            return
        wanted = {record.name: record for record in gateway.registry.endpoints()}
        for name in list(gateway.supervisor.names()):
            if name not in wanted and not gateway.deploying(name):
                await gateway.supervisor_remove(name)
                self.status.pop(name, None)
        complete = True
        for record in wanted.values():
            if gateway.deploying(record.name):
                complete = False  # its deploy flow ends with a write: we come back
                continue
            try:
                complete &= await self._follow(record)
            except Exception:
                complete = False
                log.exception("could not sync endpoint %s", record.name)
        if complete:
            self.served_version = max(self.served_version, version)
            if self._fetched:
                self._prune_cache(wanted.values())
        else:  # a deploy flow here holds an endpoint, or a fetch failed: look again soon
            self._schedule_retry(0.2, keep_later=True)
        self.synced.set()
        self._report.set()

    async def _follow(self, record: Any) -> bool:
        gateway = self.gateway
        name = record.name
        if record.desired != "running" or record.live_revision is None:
            await gateway.supervisor_stop(name)
            self.status.pop(name, None)
            return True
        state = self._runtime(name)
        if state.get("revision") == str(record.live_revision) \
                and state.get("state") in ("running", "crash_looping", "starting"):
            return True
        revision = gateway.registry.get_revision(name, record.live_revision)
        started = time.monotonic()
        try:
            binary = await self.binary(revision)
        except ArtifactError as exc:
            self._fetch_failed(name, revision, exc)
            return False
        self._failures.pop(name, None)
        self.status.pop(name, None)
        log.info("%s: revision %d is live (registry version %d); starting it here (binary "
                 "ready in %.3f s)", name, revision.number, gateway.registry.generation(),
                 time.monotonic() - started)
        await gateway.supervisor.deploy(gateway.endpoint_config(record), [binary],
                                        str(revision.number))
        return True

    def _prune_cache(self, records: Any) -> None:
        """Drop cached binaries of revisions the builder no longer keeps (revisions_to_keep);
        what runs here stays."""
        registry = self.gateway.registry
        running = self.serving()
        keep = set()
        for record in records:
            revisions = registry.revisions(record.name)
            here = int(running.pop(record.name)) if record.name in running else None
            if here is not None and here not in {r.number for r in revisions}:
                return  # a running revision we cannot name: prune nothing this time
            keep |= {r.artifact for r in revisions_to_keep(record, revisions, {here})
                     if r.artifact}
        if running:
            return  # endpoints that run here but left the registry: their removal comes
        self._fetched = False
        removed = self.cache.prune(keep)
        if removed:
            log.info("removed %d cached binar%s no recent revision uses", len(removed),
                     "y" if len(removed) == 1 else "ies")

    async def binary(self, revision: Any) -> str:
        """The local path of ``revision``'s binary, fetched from the store if need be."""
        if revision.artifact:
            return await self._cached(revision.artifact)
        if revision.binary and os.path.isfile(revision.binary):
            return revision.binary
        raise ArtifactError(f"revision {revision.number} of {revision.endpoint} has no "
                            "artifact in the store")

    async def _cached(self, digest: str) -> str:
        """``digest``'s binary in the local cache (fetched when missing); the cache is
        pruned after the next complete reconcile."""
        path = await self.cache.ensure(digest)
        self._fetched = True
        return path

    def _fetch_failed(self, name: str, revision: Any, exc: Exception) -> None:
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        delay = FETCH_BACKOFF[min(failures, len(FETCH_BACKOFF)) - 1]
        corrupt = isinstance(exc, ArtifactCorrupt)
        serving = self._runtime(name).get("revision")
        keeps = f"; revision {serving} keeps serving" if serving else ""
        reason = (f"{'refused' if corrupt else 'cannot fetch'} the binary of revision "
                  f"{revision.number}: {getattr(exc, 'reason', exc)}{keeps}; retrying in "
                  f"{delay:g} s")
        log.warning("%s: %s", name, reason)
        self.status[name] = {"state": "artifact_fetch_failed", "reason": reason,
                             "revision": revision.number, "attempts": failures,
                             "time": time.time()}
        self.gateway.events.publish("node", endpoint=name, **self.status[name])
        self._schedule_retry(delay)

    def _schedule_retry(self, delay: float, keep_later: bool = False) -> None:
        """Reconcile again in ``delay`` seconds; with ``keep_later`` a retry already
        planned (a fetch's backoff) is kept, not brought forward."""
        loop = asyncio.get_running_loop()
        if self._retry is not None:
            if keep_later and self._retry.when() > loop.time():
                return
            self._retry.cancel()
        self._retry = loop.call_later(delay, self._wake.set)

    # -- readiness ---------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Ready when synced, and everything that should serve here does, at the live
        revision the registry names."""
        if not self.synced.is_set():
            return False, "not synced with the registry yet"
        if not self.serves:
            return True, "builder: serves no endpoints"
        gateway = self.gateway
        for record in gateway.registry.endpoints():
            if record.desired != "running" or record.live_revision is None:
                continue
            state = self._runtime(record.name)
            if state.get("revision") != str(record.live_revision) \
                    or state.get("state") not in ("running", "crash_looping"):
                return False, (f"{record.name}: revision {record.live_revision} is not "
                               f"serving here yet ({state.get('state') or 'not started'})")
        return True, f"serving registry version {self.served_version}"

    def describe(self) -> dict[str, Any]:
        registry = self.gateway.registry  # a PostgresRegistry
        return {"node": self.node_id, "registry": registry.target,
                "registry_version": registry.generation(),
                "served_version": self.served_version,
                "registry_connected": registry.connected,
                "registry_listener_pid": registry.listener_pid,
                "registry_reconnects": registry.reconnects,
                "artifacts": self.cache.store.describe(), "serves": self.serves}

    # -- building through the queue --------------------------------------------------------

    async def build(self, name: str, request: BuildRequest,
                    on_progress: Callable[..., None]) -> QueuedBuild:
        """Build through the queue (or reuse a finished build of the same key) and return
        the result with the binary fetched here."""
        key = queue_key(request.source, list(request.deps), request.profile)
        done = await self.queue.find_done(key)
        if done is not None and done.get("ok") and done.get("artifact"):
            try:  # built before: its artifact, unless it was collected since
                return QueuedBuild({**done, "cached": True},
                                   await self._cached(done["artifact"]))
            except ArtifactNotFound:
                pass
        job = await self.queue.enqueue(name, None, key, {
            "name": request.name, "source": request.source, "deps": list(request.deps),
            "profile": request.profile})
        on_progress({"phase": "queued", "message": f"queued as build job {job}"})
        done = await self.queue.wait(job, BUILD_WAIT, on_progress=on_progress)
        binary = None
        if done.get("ok") and done.get("artifact"):
            binary = await self._cached(done["artifact"])
        return QueuedBuild(done, binary)


class BuilderLoop:
    """The builder role: claim queued builds, build each once, upload the binary by its
    digest, complete the job (progress goes to whoever waits for it)."""

    def __init__(self, queue: Any, builder: Any, cache: ArtifactCache, *, registry: Any = None,
                 nodes: NodeTable | None = None, poll: float = 2.0, heartbeat: float = 2.0):
        self.queue = queue
        self.registry = registry
        self.nodes = nodes
        self._swept = 0.0
        self.builder = builder
        self.cache = cache
        self.poll = poll
        self.heartbeat = heartbeat
        self.worker_id = process_id()
        self._task: asyncio.Task | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        watch_task(self._task, "the builder loop", lambda: self._stopped)

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                job = await self.queue.claim(self.worker_id)
            except asyncio.CancelledError:
                if not stray_cancel():
                    raise
                job = None
            except Exception as exc:
                log.warning("builder: cannot claim a job: %s", exc)
                job = None
            if job is None:
                await self.queue.next_job_signal(self.poll)
                continue
            await self.run_job(job)

    async def run_job(self, job: Any) -> None:
        request = job.request
        log.info("builder: job %s (%s, %s)", job.id, job.endpoint, request.get("profile"))
        beat = asyncio.ensure_future(self._beat(job.id, request["name"]))
        loop = asyncio.get_running_loop()

        def on_progress(*args: Any, **kwargs: Any) -> None:
            event = progress_fields(args, kwargs)
            loop.call_soon_threadsafe(
                lambda: asyncio.ensure_future(self._progress(job.id, event)))

        try:
            result = await self.builder.build(
                BuildRequest(name=request["name"], source=request["source"],
                             deps=tuple(request.get("deps") or ()),
                             profile=request.get("profile", "dev")),
                on_progress=on_progress)
            outcome = {"ok": bool(result.ok), "status": result.status,
                       "content_hash": result.content_hash, "cached": bool(result.cached),
                       "duration": result.duration, "profile": result.profile,
                       "diagnostics": [jsonable(d) for d in result.diagnostics or []],
                       "builder": self.worker_id}
            if result.ok:
                outcome["artifact"] = await self.cache.publish(str(result.binary))
            else:
                outcome["log"] = (result.log or "")[-4000:]
        except Exception as exc:
            log.exception("builder: job %s failed", job.id)
            outcome = {"ok": False, "status": "error", "builder": self.worker_id,
                       "reason": f"the builder failed: {exc}",
                       "diagnostics": [{"level": "error", "message": f"the builder failed: {exc}"}]}
        finally:
            beat.cancel()
        await self.queue.complete(job.id, outcome)
        if self.registry is not None and time.monotonic() - self._swept > GC_INTERVAL:
            self._swept = time.monotonic()
            try:
                await self.collect()
            except Exception as exc:  # the next build tries again
                log.warning("builder: collecting old artifacts failed: %s", exc)

    async def collect(self) -> list[str]:
        """Remove old revisions and the artifacts no revision needs. Kept: each endpoint's
        last ``KEEP_REVISIONS`` revisions, the live one, every revision a gateway still
        runs (its report in the ``gateways`` table), whatever was built within the grace
        period."""
        served = await self.nodes.served_revisions() if self.nodes is not None else set()
        kept, live = [], set()
        for record in self.registry.endpoints():
            revisions = self.registry.revisions(record.name)
            running = {number for name, number in served if name == record.name}
            keeping = revisions_to_keep(record, revisions, running)
            if len(keeping) < len(revisions):
                await self.registry.prune_revisions(record.name,
                                                    [r.number for r in keeping])
            for revision in keeping:
                kept.append((record.name, revision.number, revision.artifact))
                if revision.artifact and (revision.number == record.live_revision
                                          or revision.number in running):
                    live.add(revision.artifact)
        keep = to_keep(kept, live, KEEP_REVISIONS)
        keep |= set(await self.queue.recent_artifacts(GC_GRACE))
        deleted = await collect_artifacts(self.cache.store, keep)
        if deleted:
            log.info("builder: removed %d old artifact(s) from %s", len(deleted),
                     self.cache.store.describe())
        return deleted

    async def _progress(self, job: int, event: dict[str, Any]) -> None:
        try:
            await self.queue.progress(job, event)
        except Exception:
            log.debug("progress of job %s not sent", job, exc_info=True)

    async def _beat(self, job: int, name: str) -> None:
        """Tell the queue the job is alive; when the job is no longer ours (cancelled from a
        gateway, or claimed by another builder after we went silent), stop building it."""
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                ours = await self.queue.heartbeat(job, self.worker_id)
            except Exception:
                log.debug("heartbeat of job %s not sent", job, exc_info=True)
                continue
            if not ours:
                log.info("builder: job %s was cancelled; stopping its build", job)
                self.builder.cancel(name)
                return
