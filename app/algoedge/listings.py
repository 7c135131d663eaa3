"""Public listings (the bot marketplace, signal providers) served from memory and Redis for a while.

The listings are the same for every user and read far more often than they change, so each page
is kept as its encoded JSON for LISTING_TTL_SECONDS after it was read from Postgres: in Redis,
shared by every pod, and in each API process until the same instant (the Redis entry's remaining
time, read with it), so a page is never older than LISTING_TTL_SECONDS wherever it is served
from. A process holds at most MAX_PAGES_IN_MEMORY pages (page names come from query strings).
Redis failing means reading Postgres, and holding what was read in memory as long.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.cache import RedisFallback, listing_key
from algoedge.jsonbody import encode_json

LISTING_TTL_SECONDS: Final = 60
MAX_PAGES_IN_MEMORY: Final = 1024


class Listings:
    def __init__(
        self,
        redis: Redis,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_pages: int = MAX_PAGES_IN_MEMORY,
    ) -> None:
        self._redis = redis
        self._max_pages = max_pages
        self._fallback = RedisFallback()
        self._clock = clock
        # name -> (clock() after which the page is stale, the page's JSON)
        self._pages: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, name: str, load: Callable[[], Awaitable[Any]]) -> bytes:
        """The JSON of the page called ``name``: from memory, from Redis, or ``load``-ed and stored."""
        now = self._clock()
        held = self._pages.get(name)
        if held is not None and held[0] > now:
            return held[1]
        key = listing_key(name)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                raw, ttl_ms = await pipe.execute()
        except RedisError as exc:
            self._fallback.record("listing_read", exc)
            loaded = encode_json(await load())
            self._remember(name, loaded, until=now + LISTING_TTL_SECONDS)
            return loaded
        if raw is not None:
            cached: bytes = raw.encode()
            # -1 (no expiry) never happens for a key this module wrote; keep it briefly then.
            self._remember(name, cached, until=now + (ttl_ms / 1000 if ttl_ms > 0 else 1.0))
            return cached
        body = encode_json(await load())
        try:
            await self._redis.set(key, body, ex=LISTING_TTL_SECONDS)
        except RedisError as exc:
            self._fallback.record("listing_write", exc)
        self._remember(name, body, until=now + LISTING_TTL_SECONDS)
        return body

    def _remember(self, name: str, body: bytes, *, until: float) -> None:
        self._pages[name] = (until, body)
        self._pages.move_to_end(name)
        while len(self._pages) > self._max_pages:
            self._pages.popitem(last=False)
