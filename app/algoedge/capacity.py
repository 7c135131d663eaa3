"""The operator's demand signal: linked accounts (Postgres), connected accounts, queue backlogs and the API's connected sockets (Redis)."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from algoedge.db import Database, accounts
from algoedge.keys import (
    API_SOCKETS_KEY,
    API_SOCKETS_STALE_SECONDS,
    BRIDGE_CONNECTED_KEY,
    BRIDGE_HEARTBEAT_SECONDS,
)

#: kombu's Redis transport keeps priority levels 3, 6 and 9 of a queue in lists named
#: ``<queue>\x06\x16<n>`` (level 0 is the bare name), and every message a worker reserved but
#: has not acknowledged (running, prefetched, or waiting out a retry countdown) in the hash
#: ``unacked`` (delivery tag -> JSON [message, exchange, routing key]).
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)
KOMBU_UNACKED_KEY = "unacked"


@dataclass(frozen=True, slots=True)
class Capacity:
    linked_accounts: int
    connected_accounts: int
    queue_backlog: dict[str, int]
    #: socket.io connections to every API process of the tenant (their fresh counts summed).
    connected_sockets: int


def fresh_socket_count(entries: dict[Any, Any], *, now: float) -> int:
    """The sum of the API processes' socket counts (``"<sockets> <unix time>"``) reported within
    API_SOCKETS_STALE_SECONDS of ``now``; unreadable entries count nothing."""
    total = 0
    for raw in entries.values():
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            count, at = (int(part) for part in text.split())
        except ValueError:
            continue
        if now - at < API_SOCKETS_STALE_SECONDS and count >= 0:
            total += count
    return total


def waiting_lists(queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s waiting tasks, every priority level."""
    return [queue] + [f"{queue}{KOMBU_PRIORITY_SEPARATOR}{n}" for n in KOMBU_PRIORITY_STEPS]


def reserved_by_queue(unacked: list[str]) -> Counter[str]:
    """Count reserved messages per routing key (Celery routes to a queue by its own name)."""
    counts: Counter[str] = Counter()
    for raw in unacked:
        try:
            _, _, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue  # not kombu's format: nothing we can attribute
        if isinstance(routing_key, str):
            counts[routing_key] += 1
    return counts


async def read_capacity(db: Database, redis: Redis, *, queues: tuple[str, ...]) -> Capacity:
    """Raises when Redis or Postgres cannot answer: a guess would make the operator scale wrongly.

    A queue's backlog is its waiting tasks plus those reserved by workers and not yet
    acknowledged: a scaler that reads only the list length sees an idle queue while workers
    hoard work.
    """
    linked = await accounts.count_linked_accounts(db)
    fresh_after = time.time() - BRIDGE_HEARTBEAT_SECONDS
    async with redis.pipeline(transaction=False) as pipe:
        # Bridge replicas keep a sorted set of account id -> last heartbeat (unix seconds).
        pipe.zcount(BRIDGE_CONNECTED_KEY, fresh_after, "+inf")
        pipe.hvals(KOMBU_UNACKED_KEY)
        pipe.hgetall(API_SOCKETS_KEY)
        for queue in queues:
            for name in waiting_lists(queue):
                pipe.llen(name)
        connected, unacked, sockets, *lengths = await pipe.execute()
    reserved = reserved_by_queue(unacked)
    per_queue = len(KOMBU_PRIORITY_STEPS) + 1
    return Capacity(
        linked_accounts=linked,
        connected_accounts=int(connected),
        queue_backlog={
            queue: sum(int(n) for n in lengths[i * per_queue : (i + 1) * per_queue])
            + reserved[queue]
            for i, queue in enumerate(queues)
        },
        connected_sockets=fresh_socket_count(sockets, now=time.time()),
    )
