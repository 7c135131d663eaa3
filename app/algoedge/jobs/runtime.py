"""One asyncio event loop per Celery process, in its own thread, holding the process's Postgres pool and Redis client.

Celery runs tasks in pool threads (``--pool threads``) and beat runs its scheduler synchronously;
the data layer is asyncio (aiopg). Rather than a pool and a loop per task, every task thread
submits coroutines to this one loop and waits for the answer with a deadline, so a process has
one bounded connection pool whatever its concurrency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from redis.asyncio import Redis

from algoedge.cache import connect_redis
from algoedge.config import JobsSettings
from algoedge.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class Runtime:
    """Started lazily on first use (thread-safe), stopped by :meth:`close`."""

    def __init__(self, settings: JobsSettings, *, pool_max: int) -> None:
        self._settings = settings
        self._pool_max = pool_max
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._db: Database | None = None
        self._redis: Redis | None = None

    @property
    def settings(self) -> JobsSettings:
        return self._settings

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="jobs-loop", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            return loop

    async def _database(self) -> Database:
        # Only ever called on the loop thread, so no lock is needed around the lazy connect.
        if self._db is None:
            pool = {"db_pool_min": 0, "db_pool_max": self._pool_max}
            self._db = await Database.connect(self._settings.model_copy(update=pool))
        return self._db

    async def _client(self) -> Redis:
        if self._redis is None:
            self._redis = connect_redis(self._settings)
        return self._redis

    def call(
        self,
        work: Callable[[Database, Redis], Awaitable[T]],
        *,
        timeout: float | None = None,
    ) -> T:
        """Run ``work(db, redis)`` on the loop and wait for its result (or its exception).

        ``timeout`` defaults to the database timeout plus a margin; on expiry the coroutine is
        cancelled and TimeoutError raised, so no task thread waits forever on a dead server.
        """
        loop = self._start()

        async def run() -> T:
            return await work(await self._database(), await self._client())

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        limit = timeout if timeout is not None else self._settings.db_timeout * 3 + 5
        try:
            return future.result(timeout=limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"database/Redis work took over {limit:.0f}s") from None

    def query(
        self,
        fn: Callable[Concatenate[Database, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(db, *args, **kwargs)`` on the loop: the usual way a task calls the data layer."""

        async def work(db: Database, _redis: Redis) -> T:
            return await fn(db, *args, **kwargs)

        return self.call(work)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._db is not None:
                await self._db.close()
            if self._redis is not None:
                await self._redis.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        except (concurrent.futures.TimeoutError, OSError) as exc:
            log.warning("closing the jobs runtime: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._db = self._redis = None
