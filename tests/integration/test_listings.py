"""Listing pages on a real Redis: held in process memory no longer than in Redis, bounded, and
served from Postgres when Redis is gone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from algoedge.cache import listing_key
from algoedge.listings import LISTING_TTL_SECONDS, Listings
from redis.asyncio import Redis

from devtools.services import LOOPBACK, RedisServer, free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Stands in for the Postgres query: counts its calls, returns a new page each time."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"items": [{"id": self.calls}], "next_cursor": None}


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


def page_name(request: pytest.FixtureRequest) -> str:
    return f"test:{request.node.name}"


async def test_should_serve_a_page_from_memory_until_its_redis_entry_expires(
    redis: Redis, request: pytest.FixtureRequest
) -> None:
    name, load, clock = page_name(request), Loader(), Clock()
    first_pod, second_pod = Listings(redis), Listings(redis, clock=clock)
    body = await first_pod.get(name, load)
    assert json.loads(body) == {"items": [{"id": 1}], "next_cursor": None}
    assert 0 < await redis.pttl(listing_key(name)) <= LISTING_TTL_SECONDS * 1000

    assert await second_pod.get(name, load) == body  # from Redis, not Postgres
    assert load.calls == 1
    await redis.set(listing_key(name), '{"items": [], "next_cursor": null}', ex=LISTING_TTL_SECONDS)
    assert await second_pod.get(name, load) == body  # from its memory
    clock.now += LISTING_TTL_SECONDS  # the Redis entry it read would have expired by now
    assert json.loads(await second_pod.get(name, load)) == {"items": [], "next_cursor": None}
    assert load.calls == 1


async def test_should_hold_a_bounded_number_of_pages(
    redis: Redis, request: pytest.FixtureRequest
) -> None:
    load = Loader()
    listings = Listings(redis, max_pages=2)
    names = [f"{page_name(request)}:{i}" for i in range(3)]
    for name in names:
        await listings.get(name, load)
    await redis.delete(*(listing_key(n) for n in names))
    for name in names[1:]:
        await listings.get(name, load)  # the two newest are still in memory
    assert load.calls == 3
    await listings.get(names[0], load)  # the oldest was dropped
    assert load.calls == 4


async def test_should_load_from_postgres_when_redis_is_unreachable_and_hold_that_page(
    request: pytest.FixtureRequest,
) -> None:
    dead: Redis = Redis.from_url(
        f"redis://{LOOPBACK}:{free_port()}/0", decode_responses=True, socket_connect_timeout=1
    )
    load, clock = Loader(), Clock()
    listings = Listings(dead, clock=clock)
    try:
        first = await listings.get(page_name(request), load)
        assert await listings.get(page_name(request), load) == first
        clock.now += LISTING_TTL_SECONDS
        second = await listings.get(page_name(request), load)
    finally:
        await dead.aclose()
    assert (json.loads(first)["items"], json.loads(second)["items"]) == ([{"id": 1}], [{"id": 2}])
    assert load.calls == 2
