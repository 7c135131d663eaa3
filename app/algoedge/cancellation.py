"""Stopping tasks on Python 3.11, where a cancellation can be lost.

``asyncio.wait_for`` (which aiopg awaits every query with, and which libraries use for their
timeouts) returns the result instead of raising when its task is cancelled just as the awaited
future completes. The task then runs on with ``Task.cancelling()`` still counting the request,
and a plain ``task.cancel(); await task`` waits forever (measured: 193 of 1,500 tasks cancelled
mid-query ran on; the API's outbox loop, cancelled during a delivery, hung an app's shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

#: How long a cancelled task gets before it is cancelled again.
RECANCEL_EVERY = 0.5


def honour_cancellation() -> None:
    """Raise the current task's cancellation if an await swallowed it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, within: float = 10.0, patience: float = RECANCEL_EVERY
) -> None:
    """Cancel ``tasks`` and wait until they end, cancelling again those that lost it.

    The first cancellation gets ``patience`` seconds (for tasks that clean up when cancelled),
    later ones ``RECANCEL_EVERY``. Gives up after ``within`` seconds, naming the tasks still running in a warning. Failures of
    the tasks are logged, not raised: this is for shutting down.
    """
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    wait = patience
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=wait)
        wait = RECANCEL_EVERY
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("task %s failed", task.get_name(), exc_info=task.exception())
        if pending and loop.time() >= deadline:
            log.warning(
                "still running %.0f s after being cancelled: %s",
                within,
                ", ".join(sorted(task.get_name() for task in pending)),
            )
            return
