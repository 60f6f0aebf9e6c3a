"""Loops that must run until stopped (following the registry, reporting, building): telling
a cancellation of the loop itself from one that came out of something it awaited, and
saying loudly when such a loop ends on its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def stray_cancel() -> bool:
    """Whether a ``CancelledError`` caught in a long-running loop came from something the
    loop awaited (a cancelled inner future) rather than the loop's own task being
    cancelled: the loop must go on, or this gateway would silently stop following."""
    task = asyncio.current_task()
    return task is not None and not task.cancelling()


def watch_task(task: asyncio.Task, what: str, stopping: Callable[[], bool]) -> None:
    """Log loudly if ``task`` (a loop meant to run until stopped) ends on its own."""
    def ended(done: asyncio.Task) -> None:
        if stopping():
            return
        exc = None if done.cancelled() else done.exception()
        log.error("%s stopped unexpectedly%s", what, f": {exc!r}" if exc else "",
                  exc_info=exc)
    task.add_done_callback(ended)
