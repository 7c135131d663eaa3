"""Queue backlog and the age of each queue's oldest waiting task, sampled by the beat for /metrics.

Celery's messages carry no time they were sent, so the age is observed: kombu pushes on the left
of a queue's Redis list and workers pop on the right, so the right end (``LINDEX -1``) is the
oldest waiting message. The sampler remembers which message it saw there and since when; while
the same message stays at the end its age grows. It is a lower bound: a message already waiting
when the beat started counts from the beat's first sample, and the resolution is the beat's tick
(at most 30 s).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from redis.asyncio import Redis

from algoedge.capacity import KOMBU_UNACKED_KEY, reserved_by_queue, waiting_lists
from algoedge.jobs.metrics import QUEUE_BACKLOG, QUEUE_OLDEST_AGE


@dataclass(frozen=True, slots=True)
class QueueSample:
    queue: str
    #: Waiting tasks (every priority level) plus those reserved by workers and not acknowledged.
    backlog: int
    #: Seconds the oldest waiting task has been seen waiting; 0 when none waits.
    oldest_age: float


@dataclass
class QueueSampler:
    queues: tuple[str, ...]
    #: Redis list -> (digest of the message at its right end, monotonic time first seen there).
    _tails: dict[str, tuple[bytes, float]] = field(default_factory=dict)

    async def sample(self, redis: Redis, *, now: float) -> list[QueueSample]:
        """One pipelined round trip; ``now`` is a monotonic clock reading. Raises RedisError."""
        lists = [(queue, name) for queue in self.queues for name in waiting_lists(queue)]
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hvals(KOMBU_UNACKED_KEY)
            for _, name in lists:
                pipe.llen(name)
                pipe.lindex(name, -1)
            unacked, *replies = await pipe.execute()
        reserved = reserved_by_queue(unacked)
        backlog = dict.fromkeys(self.queues, 0)
        oldest = dict.fromkeys(self.queues, 0.0)
        for (queue, name), length, tail in zip(lists, replies[::2], replies[1::2], strict=True):
            backlog[queue] += int(length)
            if tail is None:
                self._tails.pop(name, None)
                continue
            raw = tail if isinstance(tail, bytes) else str(tail).encode()
            digest = hashlib.blake2b(raw, digest_size=16).digest()
            seen = self._tails.get(name)
            if seen is None or seen[0] != digest:
                self._tails[name] = (digest, now)
                continue
            oldest[queue] = max(oldest[queue], now - seen[1])
        return [
            QueueSample(queue=q, backlog=backlog[q] + reserved[q], oldest_age=oldest[q])
            for q in self.queues
        ]


def publish(samples: list[QueueSample]) -> None:
    for sample in samples:
        QUEUE_BACKLOG.labels(queue=sample.queue).set(sample.backlog)
        QUEUE_OLDEST_AGE.labels(queue=sample.queue).set(sample.oldest_age)
