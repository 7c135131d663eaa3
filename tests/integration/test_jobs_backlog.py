"""The beat's queue sampler against a real Redis: backlog per queue and the oldest task's age."""

from __future__ import annotations

import json

from algoedge.capacity import KOMBU_PRIORITY_SEPARATOR, KOMBU_UNACKED_KEY
from algoedge.jobs import backlog
from algoedge.jobs.metrics import QUEUE_BACKLOG, QUEUE_OLDEST_AGE
from redis.asyncio import Redis

from devtools.services import RedisServer


async def test_backlog_counts_every_level_and_reserved_and_age_follows_the_oldest(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        await redis.flushall()
        sampler = backlog.QueueSampler(("default", "reports"))
        empty = await sampler.sample(redis, now=100.0)
        assert empty == [
            backlog.QueueSample("default", 0, 0.0),
            backlog.QueueSample("reports", 0, 0.0),
        ]

        # kombu pushes on the left; the right end is the oldest.
        await redis.lpush("reports", "m1")
        await redis.lpush("reports", "m2")
        await redis.lpush(f"reports{KOMBU_PRIORITY_SEPARATOR}6", "p1")
        await redis.hset(KOMBU_UNACKED_KEY, "tag-1", json.dumps([{}, "", "reports"]))
        await redis.hset(KOMBU_UNACKED_KEY, "tag-2", "not kombu's format")
        first = await sampler.sample(redis, now=200.0)
        assert first[1] == backlog.QueueSample("reports", 4, 0.0)  # first sight: age 0

        second = await sampler.sample(redis, now=230.0)
        assert second[1] == backlog.QueueSample("reports", 4, 30.0)

        # The oldest is taken: its successor counts from when it was first seen at the end.
        assert await redis.rpop("reports") == b"m1"
        third = await sampler.sample(redis, now=260.0)
        # m2 is new at the end (age 0), p1 has been at its level's end since 200.
        assert third[1] == backlog.QueueSample("reports", 3, 60.0)

        await redis.delete("reports", f"reports{KOMBU_PRIORITY_SEPARATOR}6", KOMBU_UNACKED_KEY)
        drained = await sampler.sample(redis, now=300.0)
        assert drained[1] == backlog.QueueSample("reports", 0, 0.0)
        await redis.lpush("reports", "m3")
        again = await sampler.sample(redis, now=310.0)
        assert again[1].oldest_age == 0.0  # nothing remembered from before the drain

        backlog.publish(second)
        assert QUEUE_BACKLOG.labels(queue="reports")._value.get() == 4
        assert QUEUE_OLDEST_AGE.labels(queue="reports")._value.get() == 30.0
    finally:
        await redis.flushall()
        await redis.aclose()
