"""Public listings (the bot marketplace, signal providers) served from Redis for a short while.

The listings are the same for every user and read far more often than they change, so each page
is cached as rendered JSON for LISTING_TTL_SECONDS. Redis failing means reading Postgres directly.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.cache import RedisFallback, listing_key
from algoedge.jsonable import to_jsonable

LISTING_TTL_SECONDS = 60


class Listings:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._fallback = RedisFallback()

    async def get(self, name: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """The JSON-ready page called ``name``, from Redis or freshly ``load``-ed and stored."""
        key = listing_key(name)
        try:
            raw = await self._redis.get(key)
        except RedisError as exc:
            self._fallback.record("listing_read", exc)
            return to_jsonable(await load())
        if raw is not None:
            return json.loads(raw)
        value = to_jsonable(await load())
        try:
            await self._redis.set(key, json.dumps(value), ex=LISTING_TTL_SECONDS)
        except RedisError as exc:
            self._fallback.record("listing_write", exc)
        return value
