"""Putting tasks on the queue from an asyncio process (the API) without blocking its event loop.

Callers record the work in Postgres first (a pending report, an e-mail delivery) and then call
this; when Redis cannot take the message the call returns False, logged and counted, and the
beat's sweeper enqueues the recorded work again later. So a request never fails, and no work is
lost, because the broker blipped.
"""

from __future__ import annotations

import asyncio
import logging

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from algoedge.config import ServiceSettings
from algoedge.jobs import names
from algoedge.jobs.celery_app import create_celery
from algoedge.metrics import JOBS_ENQUEUE_FAILURES

log = logging.getLogger(__name__)


class JobQueue:
    """Sends tasks by name; routing and broker options come from :func:`create_celery`."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> JobQueue:
        return cls(create_celery(settings))

    async def send(self, task: str, *args: object) -> bool:
        """True once Redis holds the message; False (logged, counted) when it could not."""
        try:
            # kombu's Redis producer blocks on its socket: keep it off the event loop.
            await asyncio.to_thread(self._celery.send_task, task, args=list(args))
        except (KombuError, RedisError, OSError) as exc:
            JOBS_ENQUEUE_FAILURES.labels(task=task).inc()
            log.warning(
                "could not enqueue %s (%s); the sweeper will retry", task, type(exc).__name__
            )
            return False
        return True

    async def generate_report(self, report_id: int) -> bool:
        return await self.send(names.GENERATE_REPORT, report_id)

    async def send_email(self, delivery_id: int) -> bool:
        return await self.send(names.SEND_EMAIL, delivery_id)

    def close(self) -> None:
        self._celery.close()
