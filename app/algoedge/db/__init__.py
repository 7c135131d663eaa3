"""The one data-access module: aiopg pools (normally pointed at pgBouncer) and the SQL that uses them.

Everything that talks to Postgres goes through :class:`Database`. The pools are safe behind
pgBouncer in transaction mode: every statement runs in autocommit or inside an explicit
transaction that ends before the connection goes back to the pool, and nothing relies on session
state (no SET, no session advisory locks, no server-side prepared statements — psycopg2
interpolates on the client).

Each query function says which server it needs: ``cursor()`` and ``transaction()`` are the
primary; ``read_replica()`` is the read replica when one is configured, answers and is fresh
enough (``db.replica``), else the primary. Docs: docs/architecture.md, "Read replicas".

Rows are frozen dataclasses. Those the API renders (trades, bots, signals, …) have no
``__slots__``: orjson reads a plain dataclass's ``__dict__`` in C but a slotted one field by field,
which made a page of 20 trades ~2x slower to encode (docs/benchmarks.md, "Third pass: the
Postgres routes").
"""

from __future__ import annotations

import errno
import select
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiopg
import aiopg.connection

from algoedge.cancellation import honour_cancellation
from algoedge.config import MigrateSettings, ReadReplicaSettings
from algoedge.db.cursors import pooled_cursor
from algoedge.db.replica import READ_FAILURES, Replica, check_read_only
from algoedge.metrics import DB_QUERIES, DB_REPLICA_FALLBACKS


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


async def _create_pool(url: str, *, minsize: int, settings: MigrateSettings) -> aiopg.Pool:
    return await aiopg.create_pool(
        url,
        minsize=minsize,
        maxsize=settings.db_pool_max,
        timeout=settings.db_timeout,
        # hstore lookup costs a query on every new connection and nothing here uses hstore.
        enable_hstore=False,
        # Drop connections pgBouncer or a failover has killed instead of handing them out.
        pool_recycle=300,
    )


class Database:
    """Open aiopg pools (the primary's, and a replica's when configured) plus the queries the app
    runs; create with :meth:`connect`."""

    #: Class-level so a subclass that builds no pools (bench/baseline_app.py) reads the primary.
    _replica: Replica | None = None

    def __init__(self, pool: aiopg.Pool, *, replica: Replica | None = None) -> None:
        self._pool = pool
        self._replica = replica

    @classmethod
    async def connect(cls, settings: MigrateSettings) -> Database:
        """The primary's pool, and with ``ALGOEDGE_DATABASE_READ_URL`` (api, worker) the
        replica's, watched from now on; a replica that does not answer never fails this."""
        pool = await _create_pool(
            settings.database_url, minsize=settings.db_pool_min, settings=settings
        )
        db = cls(pool)
        if isinstance(settings, ReadReplicaSettings) and settings.database_read_url:
            # minsize 0: creating the pool connects nothing, so a replica that is down now
            # costs one failed look, not the process's start.
            replica_pool = await _create_pool(
                settings.database_read_url, minsize=0, settings=settings
            )
            db._replica = Replica(
                replica_pool,
                max_lag=settings.database_read_max_lag,
                primary_position=db._primary_position,
            )
            await db._replica.start()
        return db

    @property
    def replica(self) -> Replica | None:
        """The read replica, when one is configured (its ``state`` says where reads go now)."""
        return self._replica

    async def close(self) -> None:
        if self._replica is not None:
            await self._replica.close()
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
        """An autocommit cursor on the primary: each statement is its own transaction."""
        DB_QUERIES.labels(pool="primary").inc()
        async with pooled_cursor(self._pool) as cur:
            yield cur
        honour_cancellation()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiopg.Cursor]:
        """A cursor inside BEGIN … COMMIT (ROLLBACK on error) on one pooled primary connection."""
        DB_QUERIES.labels(pool="primary").inc()
        async with pooled_cursor(self._pool) as cur, cur.begin():
            yield cur
        honour_cancellation()

    async def read_replica(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one plain SELECT, from the replica while it may answer, else the primary.

        For reads whose rows the caller did not just write through this app (what a user
        writes must read back from the primary at once): the replica may trail the primary by
        up to ALGOEDGE_DATABASE_READ_MAX_LAG seconds. A read that fails on the replica is run
        again on the primary, so a replica going away never fails the caller.
        """
        check_read_only(sql)
        replica = self._replica
        if replica is not None:
            if replica.state == "usable":
                try:
                    rows = await replica.fetch(sql, params)
                except READ_FAILURES as error:
                    replica.read_failed(error)
                    DB_REPLICA_FALLBACKS.labels(reason="read_failed").inc()
                else:
                    DB_QUERIES.labels(pool="replica").inc()
                    return rows
            else:
                DB_REPLICA_FALLBACKS.labels(reason=replica.state or "unreachable").inc()
        async with self.cursor() as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall())

    async def _primary_position(self) -> str:
        """The primary's WAL write position, for the replica's lag (not a counted query)."""
        async with pooled_cursor(self._pool) as cur:
            await cur.execute("SELECT pg_current_wal_lsn()::text")
            (position,) = await cur.fetchone()
        return str(position)

    async def ping(self) -> None:
        """Round-trip a trivial query; raises when the database (or pgBouncer) is unreachable."""
        async with pooled_cursor(self._pool) as cur:
            await cur.execute("SELECT 1")
            await cur.fetchone()
