"""Best-effort deliveries through Redis (socket.io emits, PUBLISHes), taken off the request path.

A request puts a delivery in this process's bounded queue and answers at once; one task sends the
deliveries in order, each within a deadline. When Redis is slow the queue fills and new
deliveries are dropped (counted in ``algoedge_outbox_dropped_total{kind}``, logged), so a hung
Redis never holds a request and never grows memory without bound. Each delivery is at most
once: whatever must not be lost is recorded in Postgres first (an account row, a session's
revocation), and its readers do not depend on the delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, Literal

from redis.exceptions import RedisError

from algoedge.cache import RedisFallback
from algoedge.metrics import OUTBOX_DROPPED

log = logging.getLogger(__name__)

#: What a delivery is, for metrics and logs: a socket.io emit to a user, the end of a session
#: (its sockets on every pod close), a bridge wake-up.
Kind = Literal["emit", "session_end", "bridge_wake"]
Deliver = Callable[[], Awaitable[object]]

#: Deliveries waiting at most; a burst of requests over a hung Redis drops beyond it.
CAPACITY: Final = 10_000
#: Seconds one delivery may take (the Redis clients' own timeouts are shorter; this also bounds
#: socket.io's retry of a failed publish).
DELIVERY_TIMEOUT_SECONDS: Final = 2.0
_WARNING_INTERVAL_SECONDS: Final = 30.0


class Outbox:
    """A bounded queue of deliveries and the task that sends them (:meth:`run`)."""

    def __init__(
        self, *, capacity: int = CAPACITY, timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS
    ) -> None:
        self._queue: asyncio.Queue[tuple[Kind, Deliver]] = asyncio.Queue(maxsize=capacity)
        self._timeout = timeout_seconds
        self._failures = RedisFallback()
        self._last_drop_warning = -_WARNING_INTERVAL_SECONDS

    def __len__(self) -> int:
        """Deliveries waiting."""
        return self._queue.qsize()

    def put(self, kind: Kind, deliver: Deliver) -> bool:
        """Queue ``deliver`` (called later, by :meth:`run`); never waits. False when dropped."""
        try:
            self._queue.put_nowait((kind, deliver))
        except asyncio.QueueFull:
            OUTBOX_DROPPED.labels(kind=kind).inc()
            now = time.monotonic()
            if now - self._last_drop_warning >= _WARNING_INTERVAL_SECONDS:
                self._last_drop_warning = now
                log.warning(
                    "outbox full (%d waiting: Redis is slow or unreachable); dropping %s "
                    "deliveries (counted in algoedge_outbox_dropped_total; this warning "
                    "repeats at most every %.0f s)",
                    self._queue.qsize(),
                    kind,
                    _WARNING_INTERVAL_SECONDS,
                )
            return False
        return True

    async def run(self) -> None:
        """Send deliveries as they come, until cancelled."""
        while True:
            kind, deliver = await self._queue.get()
            await self._send(kind, deliver)

    async def flush(self, *, within: float) -> None:
        """Send what is waiting for at most ``within`` seconds (at shutdown); drop the rest."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not self._queue.empty():
                    await self._send(*self._queue.get_nowait())
        if left := self._queue.qsize():
            log.warning("shutting down with %d outbox deliveries unsent", left)

    async def _send(self, kind: Kind, deliver: Deliver) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await deliver()
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            self._failures.record(kind, exc)
        except Exception:  # a bug in one delivery must not stop the others
            log.exception("outbox delivery %s failed unexpectedly", kind)
            self._failures.record(kind, RuntimeError("unexpected error"))
