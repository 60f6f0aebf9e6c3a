"""The gateway's event bus: build progress and state changes, fanned out to the admin
API's event stream (and through it to the sidebar, the admin page and notebook cells)."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any


class EventBus:
    """Fan-out of gateway events to any number of asyncio subscribers.

    ``publish`` never blocks: each subscriber has a bounded queue, and one that falls
    ``maxsize`` events behind is dropped (its iterator ends) rather than slowing the others.
    The last ``history`` events are kept so a new subscriber can ask for what it missed.
    """

    def __init__(self, maxsize: int = 1000, history: int = 200):
        self._subscribers: set[asyncio.Queue] = set()
        self._maxsize = maxsize
        self._history: collections.deque[dict] = collections.deque(maxlen=history)
        self._seq = 0

    def publish(self, event_type: str, **fields: Any) -> dict:
        self._seq += 1
        event = {"type": event_type, "seq": self._seq, "time": time.time(), **fields}
        self._history.append(event)
        for queue in list(self._subscribers):
            if queue.full():
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)  # tells the subscriber it was dropped
            else:
                queue.put_nowait(event)
        return event

    def since(self, seq: int) -> list[dict]:
        return [e for e in self._history if e["seq"] > seq]

    @property
    def last_seq(self) -> int:
        return self._seq

    def subscribe(self) -> Subscription:
        """A new subscription; call ``close()`` on it when done."""
        queue: asyncio.Queue = asyncio.Queue(self._maxsize)
        self._subscribers.add(queue)
        return Subscription(self, queue)

    def _unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        for queue in list(self._subscribers):
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        self._subscribers.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class Subscription:
    """One subscriber's view of an ``EventBus``."""

    def __init__(self, bus: EventBus, queue: asyncio.Queue):
        self._bus = bus
        self._queue = queue
        self.closed = False

    async def get(self, timeout: float | None = None) -> dict | None:
        """The next event; None when the bus dropped or closed this subscription.

        Raises ``asyncio.TimeoutError`` when nothing came within ``timeout`` seconds.
        """
        if self.closed:
            return None
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if event is None:
            self.closed = True
        return event

    def close(self) -> None:
        """End the subscription; a ``get()`` waiting on it returns None now. Safe to call
        more than once, and on a full queue (its oldest event makes room for the end)."""
        if self.closed:
            return
        self.closed = True
        self._bus._unsubscribe(self._queue)
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
