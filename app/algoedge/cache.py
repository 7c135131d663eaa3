"""Redis access for the app (sessions, cache, rate limits, fan-out), always through redis.asyncio.

aioredis is deliberately absent: 2.0.1 cannot be imported on Python 3.11, and redis-py's
``redis.asyncio`` is its official successor.
"""

from __future__ import annotations

from redis.asyncio import Redis

from algoedge.config import ServiceSettings


def connect_redis(settings: ServiceSettings) -> Redis:
    """A lazily connecting client with short timeouts, so a dead Redis fails fast instead of hanging."""
    client: Redis = Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=2.0,
        health_check_interval=30,
        decode_responses=True,
    )
    return client


async def ping(redis: Redis) -> None:
    """Raise when Redis does not answer."""
    await redis.ping()
