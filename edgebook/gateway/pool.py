"""The worker processes of one revision of one endpoint: dispatch, restarts, crash loops.

Dispatch keeps every worker's pipe busy: a request goes to the least-loaded ready worker
that has fewer than its pipe depth (``max_inflight_per_worker``) requests in flight; when
all are full it waits in a bounded FIFO, and a freed slot goes straight to the oldest
waiter. Requests end through callbacks (``dispatch``), so the hot path makes no task and
no future per request.

Restarts: a worker that dies is replaced after a capped exponential backoff. When
``crash_loop_deaths`` workers die early (before their ready frame, or within
``early_death_window`` seconds of it without having answered a request) within
``crash_loop_window`` seconds, the
pool is *crash looping*: requests are refused at once with 503 + Retry-After, nothing is
spawned per request, and one worker is tried again after a growing delay.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import GatewayError
from .logring import LogRing
from ..protocol import DEFAULT_MAX_FRAME
from ..sandbox import Limits
from .worker import (Outcome, ServiceHandler, WorkerGoneError, WorkerProcess, WorkerStartError,
                     not_bound, settle)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Measured with ``make bench``'s hello handler at 32 connections, one worker, gateway and
#: worker on one core: a pipe depth of 32 instead of 8 served about 9,000 instead of
#: 7,000 req/s at 105 instead of 135 us of gateway CPU per request (fewer requests wait in
#: the gateway's queue, each with a timer, and more frames share each pipe write).
SINGLE_WORKER_DEPTH = 32
MULTI_WORKER_DEPTH = 8


@dataclass
class EndpointConfig:
    """What an endpoint is and how it runs. ``env`` is added to the worker's scrubbed
    environment; ``timeout`` bounds each request in a worker and each wait in the queue;
    ``limits`` are each worker's resource limits (see ``edgebook.sandbox``)."""

    name: str
    method: str
    path: str
    domain: str | None = None
    workers: int = 1
    timeout: float = 30.0
    max_body: int = 10 * MiB
    queue_limit: int = 256
    #: Requests kept in one worker's pipe; None: ``SINGLE_WORKER_DEPTH`` for a one-worker
    #: endpoint (nothing to balance, so a deeper pipe only saves queueing in the gateway),
    #: ``MULTI_WORKER_DEPTH`` otherwise (a short pipe keeps a slow request from holding
    #: many that another worker could take).
    max_inflight_per_worker: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 10.0
    drain_timeout: float = 30.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.max_inflight_per_worker is not None and self.max_inflight_per_worker < 1:
            raise ValueError("max_inflight_per_worker must be at least 1")
        if self.timeout <= 0 or self.start_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.queue_limit < 0 or self.max_body < 0:
            raise ValueError("queue_limit and max_body must not be negative")

    @property
    def pipe_depth(self) -> int:
        """The ``max_inflight_per_worker`` in force."""
        if self.max_inflight_per_worker is not None:
            return self.max_inflight_per_worker
        return SINGLE_WORKER_DEPTH if self.workers == 1 else MULTI_WORKER_DEPTH


class _Waiter:
    """A request queued until a worker has a free slot."""

    __slots__ = ("frame", "outcome", "timer")

    def __init__(self, frame: dict, outcome: Outcome):
        self.frame = frame
        self.outcome = outcome
        self.timer: asyncio.TimerHandle | None = None


@dataclass
class RestartPolicy:
    """When dead workers are replaced and when a pool counts as crash looping."""

    backoff_base: float = 0.1
    backoff_cap: float = 10.0
    crash_loop_deaths: int = 5
    crash_loop_window: float = 30.0
    early_death_window: float = 10.0
    crash_loop_retry: float = 5.0
    crash_loop_retry_cap: float = 60.0
    stop_grace: float = 5.0


#: Pool states. ``draining`` still serves what it has (old revision after a reload).
STARTING, RUNNING, CRASH_LOOPING, DRAINING, STOPPED = (
    "starting", "running", "crash_looping", "draining", "stopped")


class WorkerPool:
    """N workers of one revision. One owner: the supervisor's endpoint record."""

    def __init__(self, config: EndpointConfig, argv: list[str], *, revision: str,
                 env: dict[str, str], log_ring: LogRing,
                 service_handler: ServiceHandler = not_bound,
                 policy: RestartPolicy | None = None, max_frame: int = DEFAULT_MAX_FRAME,
                 on_state: Callable[["WorkerPool"], None] | None = None):
        self.config = config
        self._depth = config.pipe_depth
        self.argv = list(argv)
        self.revision = revision
        self.env = env
        self.policy = policy or RestartPolicy()
        self._log_ring = log_ring
        self._service_handler = service_handler
        self._max_frame = max_frame
        self._on_state = on_state
        self.state = STARTING
        self.reason: str | None = None
        self.spawned = 0  # worker processes started by this pool, ever
        self._live: list[WorkerProcess] = []  # ready workers, dispatch order
        self._load: dict[WorkerProcess, int] = {}  # reserved slots per worker
        self._busy = 0  # sum of reserved slots
        self._starting: set[WorkerProcess] = set()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._deaths: collections.deque[float] = collections.deque()
        self._loop_entries = 0  # consecutive crash-loop entries, for the retry backoff
        self._retry_at: float | None = None  # monotonic time of the next crash-loop retry
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task] = set()
        self._idle: asyncio.Event | None = None
        #: Timings of requests in flight by request id (the supervisor's, shared): a request
        #: is marked ``dispatched`` when it is written to a worker.
        self.timings: dict = {}
        self.last_stderr: list[str] = []

    # -- what the supervisor reads --------------------------------------------------

    @property
    def inflight(self) -> int:
        return self._busy

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    def workers(self) -> list[dict]:
        return [{"pid": w.pid, "state": w.state, "inflight": w.inflight, "served": w.served,
                 "revision": self.revision}
                for w in self._live + sorted(self._starting, key=id)]

    def _set_state(self, state: str, reason: str | None = None) -> None:
        if state == self.state and reason == self.reason:
            return
        self.state, self.reason = state, reason
        if self._on_state is not None:
            self._on_state(self)

    # -- start and stop --------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait for all ready frames; raise WorkerStartError if any
        fails (and stop the others)."""
        workers = [self._new_worker() for _ in range(self.config.workers)]
        results = await asyncio.gather(
            *(w.start(self.config.start_timeout) for w in workers), return_exceptions=True)
        self._starting.difference_update(workers)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None or self.state == STOPPED:
            await asyncio.gather(*(w.stop(0.5) for w in workers))
            if isinstance(failure, WorkerStartError):
                self.last_stderr = failure.stderr_tail
                self._set_state(STOPPED, f"failed to start: {failure.reason}")
                raise failure
            if failure is not None:
                raise failure
            raise WorkerStartError("stopped while starting", [])
        for worker in workers:
            if worker.state == "ready":
                self._add_live(worker)
        self._set_state(RUNNING)
        for worker in workers:  # became ready, then died before the others were ready
            if worker.state != "ready":
                self._record_death(time.monotonic(), True, worker.exit_reason)

    def _new_worker(self) -> WorkerProcess:
        self.spawned += 1
        worker = WorkerProcess(
            self.argv, env=self.env, log_ring=self._log_ring, label=f"rev {self.revision}",
            service_handler=self._service_handler, max_frame=self._max_frame,
            on_exit=self._on_worker_exit)
        self._starting.add(worker)
        return worker

    async def drain(self, timeout: float) -> bool:
        """Take no new work from the router (it already points elsewhere), let reserved
        slots and waiters finish for up to ``timeout`` seconds, then stop. Returns
        whether everything finished in time."""
        if self.state == STOPPED:
            return True
        self._set_state(DRAINING)
        drained = True
        if self._busy or self._waiters:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                drained = False
                log.warning("revision %s of %s: %d requests still in flight after the "
                            "%gs drain", self.revision, self.config.name, self._busy, timeout)
        await self.stop()
        return drained

    async def stop(self, grace: float | None = None) -> None:
        """Stop every worker; queued requests get 503, in-flight ones what the worker says
        before it exits (or 502)."""
        grace = self.policy.stop_grace if grace is None else grace
        self._set_state(STOPPED, self.reason if self.state == CRASH_LOOPING else None)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._fail_waiters(self._unavailable())
        workers = self._live + list(self._starting)
        self._live = []
        await asyncio.gather(*(w.stop(grace) for w in workers))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- dispatch (the hot path) -----------------------------------------------------

    def dispatch(self, frame: dict, outcome: Outcome) -> None:
        """Send ``frame`` to a worker; ``outcome(response, None)`` or ``outcome(None,
        GatewayError)`` is called once, possibly from inside this call.

        A request a killed worker never started (``WorkerGoneError``) is dispatched again,
        so one request's timeout answers 504 to that request only."""
        if self.state != RUNNING and self.state != DRAINING:
            outcome(None, self._unavailable())
            return
        worker = self._pick()
        if worker is None:
            self._enqueue(frame, outcome)
            return
        self._send(worker, frame, outcome)

    async def handle(self, frame: dict) -> dict:
        """``dispatch`` as a coroutine: the response frame, or raise GatewayError."""
        future = asyncio.get_running_loop().create_future()
        self.dispatch(frame, functools.partial(settle, future))
        return await future

    def _send(self, worker: WorkerProcess, frame: dict, outcome: Outcome) -> None:
        """Submit on ``worker``, whose slot is already reserved for this request."""

        def finished(response: dict | None, error: Exception | None) -> None:
            self._release(worker)
            if error is not None and isinstance(error, WorkerGoneError):
                self.dispatch(frame, outcome)  # never started: another worker may take it
            else:
                outcome(response, error)

        timing = self.timings.get(frame["request_id"]) if self.timings else None
        if timing is not None:
            timing.mark("dispatched")
        try:
            worker.submit(frame, self.config.timeout, finished)
        except WorkerGoneError:
            self._release(worker)  # not written: safe to try another worker
            self.dispatch(frame, outcome)
        except GatewayError as exc:
            self._release(worker)
            outcome(None, exc)

    def _pick(self) -> WorkerProcess | None:
        best = None
        best_load = self._depth
        load = self._load
        for worker in self._live:
            n = load[worker]
            if n < best_load and worker.state == "ready":
                best, best_load = worker, n
                if n == 0:
                    break
        if best is not None:
            load[best] = best_load + 1
            self._busy += 1
        return best

    def _release(self, worker: WorkerProcess) -> None:
        """Give a finished request's slot to the oldest waiter, or free it."""
        if worker.state == "ready" and self._waiters:
            waiter = self._waiters.popleft()
            waiter.timer.cancel()
            self._send(worker, waiter.frame, waiter.outcome)  # the slot stays reserved
            return
        self._busy -= 1
        n = self._load[worker] - 1
        if n == 0 and worker.state != "ready" and worker not in self._live:
            del self._load[worker]
        else:
            self._load[worker] = n
        if self._idle is not None and self._busy == 0 and not self._waiters:
            self._idle.set()

    def _enqueue(self, frame: dict, outcome: Outcome) -> None:
        if len(self._waiters) >= self.config.queue_limit:
            outcome(None, GatewayError(
                503, "overloaded", f"the endpoint is overloaded: {self.config.queue_limit} "
                                   "requests already wait for a worker; try again shortly",
                log_message=f"{self.config.name}: queue full ({self.config.queue_limit})",
                headers={"Retry-After": "1"}))
            return
        waiter = _Waiter(frame, outcome)
        waiter.timer = asyncio.get_running_loop().call_later(
            self.config.timeout, self._expire_waiter, waiter)
        self._waiters.append(waiter)

    def _expire_waiter(self, waiter: "_Waiter") -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return
        if self._idle is not None and self._busy == 0 and not self._waiters:
            self._idle.set()
        waiter.outcome(None, GatewayError(
            503, "overloaded", f"the endpoint is overloaded: no worker was free within "
                               f"{self.config.timeout:g} s (the endpoint's timeout, which also "
                               "bounds the wait for a worker); try again shortly",
            log_message=f"{self.config.name}: waited {self.config.timeout:g}s for a worker",
            headers={"Retry-After": "1"}))

    def _fail_waiters(self, error: GatewayError) -> None:
        waiters, self._waiters = self._waiters, collections.deque()
        if self._idle is not None and self._busy == 0:
            self._idle.set()
        for waiter in waiters:
            waiter.timer.cancel()
            waiter.outcome(None, error)

    def _unavailable(self) -> GatewayError:
        name = self.config.name
        if self.state == CRASH_LOOPING:
            wait = 1 if self._retry_at is None else max(
                1, math.ceil(self._retry_at - time.monotonic()))
            return GatewayError(
                503, "crash_looping", "the endpoint's workers keep crashing; try again later",
                log_message=f"{name}: crash looping: {self.reason}",
                headers={"Retry-After": str(wait)})
        if self.state == STARTING:
            return GatewayError(503, "starting", "the endpoint is starting; try again shortly",
                                headers={"Retry-After": "1"})
        return GatewayError(503, "unavailable", "the endpoint is not running",
                            log_message=f"{name}: revision {self.revision} is {self.state}",
                            headers={"Retry-After": "5"})

    def _add_live(self, worker: WorkerProcess) -> None:
        self._live.append(worker)
        self._load.setdefault(worker, 0)
        cap = self._depth
        while self._waiters and self._load[worker] < cap:
            waiter = self._waiters.popleft()
            waiter.timer.cancel()
            self._load[worker] += 1
            self._busy += 1
            self._send(worker, waiter.frame, waiter.outcome)

    # -- deaths and replacements -----------------------------------------------------

    def _on_worker_exit(self, worker: WorkerProcess) -> None:
        if worker in self._live:
            self._live.remove(worker)
        if self._load.get(worker) == 0:
            del self._load[worker]
        if worker.stderr_tail:
            self.last_stderr = list(worker.stderr_tail)
        if self.state in (STOPPED, DRAINING) or worker in self._starting:
            return  # stopping on purpose, or a start failure handled by whoever started it
        if worker.exit_expected:
            log.info("%s: replacing %s (%s)", self.config.name, worker.label,
                     worker.exit_reason)
            self._schedule_spawn(0.0)
            return
        log.warning("%s: %s %s; stderr: %s", self.config.name, worker.label,
                    worker.exit_reason, " | ".join(list(worker.stderr_tail)[-3:]))
        now = time.monotonic()
        early = worker.ready_at is None or (
            worker.served == 0 and now - worker.ready_at < self.policy.early_death_window)
        self._record_death(now, early, worker.exit_reason)

    def _record_death(self, now: float, early: bool, reason: str | None) -> None:
        window = self.policy.crash_loop_window
        deaths = self._deaths
        while deaths and now - deaths[0] > window:
            deaths.popleft()
        if not deaths:
            self._loop_entries = 0  # quiet for a whole window: start the backoff afresh
        if early:
            deaths.append(now)
        if len(deaths) >= self.policy.crash_loop_deaths:
            self._enter_crash_loop(f"{len(deaths)} workers died within {window:g}s; "
                                   f"last: {reason}")
            return
        delay = min(self.policy.backoff_cap,
                    self.policy.backoff_base * 2 ** max(0, len(deaths) - 1))
        self._schedule_spawn(delay)

    def _enter_crash_loop(self, reason: str) -> None:
        self._loop_entries += 1
        delay = min(self.policy.crash_loop_retry_cap,
                    self.policy.crash_loop_retry * 2 ** (self._loop_entries - 1))
        self._retry_at = time.monotonic() + delay
        self._set_state(CRASH_LOOPING, reason)
        log.error("%s: crash looping (%s); next try in %gs", self.config.name, reason, delay)
        self._log_ring.append("gateway", f"crash looping: {reason}; next try in {delay:g}s")
        self._fail_waiters(self._unavailable())
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._schedule_spawn(delay)

    def _schedule_spawn(self, delay: float) -> None:
        if len(self._live) + len(self._starting) + len(self._timers) >= self.config.workers:
            return
        loop = asyncio.get_running_loop()
        timer = None

        def fire():
            self._timers.discard(timer)
            task = asyncio.ensure_future(self._replace())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    async def _replace(self) -> None:
        if self.state in (STOPPED, DRAINING):
            return
        worker = self._new_worker()
        try:
            await worker.start(self.config.start_timeout)
        except WorkerStartError as exc:
            self._starting.discard(worker)
            self.last_stderr = exc.stderr_tail or self.last_stderr
            if self.state in (STOPPED, DRAINING):
                return
            log.warning("%s: replacement worker failed to start: %s", self.config.name,
                        exc.reason)
            if self.state == CRASH_LOOPING:
                self._enter_crash_loop(f"still failing: {exc.reason}")
            else:
                self._record_death(time.monotonic(), True, exc.reason)
            return
        self._starting.discard(worker)
        if self.state in (STOPPED, DRAINING):
            await worker.stop(0.5)
            return
        if worker.state != "ready":  # died between ready and now; its exit was ignored
            self._record_death(time.monotonic(), True, worker.exit_reason)
            return
        self._add_live(worker)
        if self.state == CRASH_LOOPING:
            self._retry_at = None
            self._set_state(RUNNING)
        for _ in range(self.config.workers - len(self._live) - len(self._starting)):
            self._schedule_spawn(0.0)
