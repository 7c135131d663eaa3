"""The one data-access module: an aiopg pool (normally pointed at pgBouncer) and the SQL that uses it.

Everything that talks to Postgres goes through :class:`Database`. The pool is safe behind pgBouncer
in transaction mode: every statement runs in autocommit or inside an explicit transaction that
ends before the connection goes back to the pool, and nothing relies on session state (no SET,
no session advisory locks, no server-side prepared statements — psycopg2 interpolates on the
client).
"""

from __future__ import annotations

import errno
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiopg
import aiopg.connection

from algoedge.config import MigrateSettings


class _PollSelect:
    """Stands in for the ``select`` module inside aiopg.connection (used there for one check).

    After any psycopg2 error, aiopg 1.4 probes the connection's descriptor with
    ``select.select([fd], [], [], 0)``, which raises ValueError for descriptors above 1023. An
    API pod holding ~1000 sockets has such descriptors, and the ValueError escapes aiopg's
    callback: the query's waiter is never resolved, so a duplicate email hangs until the
    timeout instead of answering 409. poll() has no such limit; a closed descriptor shows as
    POLLNVAL, which is reported as the EBADF aiopg is looking for.
    """

    @staticmethod
    def select(
        rlist: list[int], wlist: list[int], xlist: list[int], timeout: float = 0
    ) -> tuple[list[int], list[int], list[int]]:
        poller = select.poll()
        for fd in rlist:
            poller.register(fd, select.POLLIN)
        events = poller.poll(int(timeout * 1000))
        if any(event & select.POLLNVAL for _, event in events):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return [fd for fd, event in events if event & select.POLLIN], [], []


aiopg.connection.select = _PollSelect  # type: ignore[attr-defined,assignment]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """What /metrics reports of the pool."""

    size: int
    free: int
    minsize: int
    maxsize: int

    @property
    def in_use(self) -> int:
        return self.size - self.free


class Database:
    """An open aiopg pool plus the queries the app runs; create with :meth:`connect`."""

    def __init__(self, pool: aiopg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, settings: MigrateSettings) -> Database:
        pool = await aiopg.create_pool(
            settings.database_url,
            minsize=settings.db_pool_min,
            maxsize=settings.db_pool_max,
            timeout=settings.db_timeout,
            # hstore lookup costs a query on every new connection and nothing here uses hstore.
            enable_hstore=False,
            # Drop connections pgBouncer or a failover has killed instead of handing them out.
            pool_recycle=300,
        )
        return cls(pool)

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()

    def stats(self) -> PoolStats:
        return PoolStats(
            size=self._pool.size,
            free=self._pool.freesize,
            minsize=self._pool.minsize,
            maxsize=self._pool.maxsize or 0,  # aiopg says None for unbounded; ours never is
        )

    @asynccontextmanager
    async def cursor(self) -> AsyncIterator[aiopg.Cursor]:
        """An autocommit cursor: each statement is its own transaction."""
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            yield cur

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiopg.Cursor]:
        """A cursor inside BEGIN … COMMIT (ROLLBACK on error) on one pooled connection."""
        async with self._pool.acquire() as conn, conn.cursor() as cur, cur.begin():
            yield cur

    async def ping(self) -> None:
        """Round-trip a trivial query; raises when the database (or pgBouncer) is unreachable."""
        async with self.cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.fetchone()
