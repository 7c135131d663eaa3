"""Telling the bridge at once that an account was linked, edited or unlinked.

A PUBLISH of the account id on ``algoedge:bridge:wake``. Best effort: the bridge also polls
Postgres every few seconds, so when Redis cannot take the message the request still succeeds and
the failure is only logged and counted (``algoedge_redis_errors_total{operation="bridge_wake"}``).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.cache import RedisFallback
from algoedge.keys import BRIDGE_WAKE_CHANNEL


class BridgeWake:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._fallback = RedisFallback()

    async def account_changed(self, account_id: int) -> None:
        """Announce that ``account_id``'s row changed or is gone (after the change committed)."""
        try:
            await self._redis.publish(BRIDGE_WAKE_CHANNEL, str(account_id))
        except RedisError as exc:
            self._fallback.record("bridge_wake", exc)
