"""The operator's demand signal: linked accounts (Postgres), connected accounts and queue backlogs (Redis)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from algoedge.cache import BRIDGE_CONNECTED_KEY, BRIDGE_HEARTBEAT_SECONDS
from algoedge.db import Database, accounts


@dataclass(frozen=True, slots=True)
class Capacity:
    linked_accounts: int
    connected_accounts: int
    queue_backlog: dict[str, int]


async def read_capacity(db: Database, redis: Redis, *, queues: tuple[str, ...]) -> Capacity:
    """Raises when Redis or Postgres cannot answer: a guess would make the operator scale wrongly."""
    linked = await accounts.count_linked_accounts(db)
    fresh_after = time.time() - BRIDGE_HEARTBEAT_SECONDS
    async with redis.pipeline(transaction=False) as pipe:
        # Bridge replicas keep a sorted set of account id -> last heartbeat (unix seconds).
        pipe.zcount(BRIDGE_CONNECTED_KEY, fresh_after, "+inf")
        for queue in queues:
            # Celery's Redis broker keeps each queue as a list named after it.
            pipe.llen(queue)
        connected, *lengths = await pipe.execute()
    return Capacity(
        linked_accounts=linked,
        connected_accounts=int(connected),
        queue_backlog={q: int(n) for q, n in zip(queues, lengths, strict=True)},
    )
