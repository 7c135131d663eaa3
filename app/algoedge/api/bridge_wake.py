"""Telling the bridge at once that an account was linked, edited or unlinked.

A PUBLISH of the account id on ``algoedge:bridge:wake``, queued in the process's outbox so the
request never waits for Redis. Best effort: the bridge also polls Postgres every few seconds, so
when Redis cannot take the message the request has still succeeded and the failure is only
logged and counted (``algoedge_redis_errors_total{operation="bridge_wake"}``, or
``algoedge_outbox_dropped_total{kind="bridge_wake"}`` when the outbox was full).
"""

from __future__ import annotations

import functools

from redis.asyncio import Redis

from algoedge.keys import BRIDGE_WAKE_CHANNEL
from algoedge.outbox import Outbox


async def wake_bridges(redis: Redis, account_id: int) -> None:
    """The wake-up itself: every bridge re-reads the linked accounts."""
    await redis.publish(BRIDGE_WAKE_CHANNEL, str(account_id))


class BridgeWake:
    def __init__(self, redis: Redis, outbox: Outbox) -> None:
        self._redis = redis
        self._outbox = outbox

    def account_changed(self, account_id: int) -> None:
        """Announce that ``account_id``'s row changed or is gone (after the change committed)."""
        self._outbox.put("bridge_wake", functools.partial(wake_bridges, self._redis, account_id))
