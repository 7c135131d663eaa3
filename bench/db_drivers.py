"""aiopg (the app's driver) against asyncpg on the API's own queries, through pgBouncer.

The question of issue 14: the mix's profile has aiopg's ``Cursor.execute`` at 18-30 % of the API
process; would another driver take a real share of that back? This runs the SQL of the mix's
Postgres routes (a page of trades, the active bots, a user, a profile update), exactly as the data
layer sends it, through the same pgBouncer in transaction pooling, with each driver in turn in
this one process, and reports this process's CPU per query (the client side of a query is what
the API pays), queries/s and latency. asyncpg runs as it must behind pgBouncer 1.18 in
transaction mode: ``statement_cache_size=0`` (unnamed statements only), once with its pool's
reset query on every release (its default) and once without. Two reference rows go straight to
PostgreSQL: asyncpg with its statement cache (what a pgBouncer with prepared-statement support
would allow) and aiopg.

    .venv/bin/python -m bench.db_drivers [--users 200] [--concurrency 32] [--duration 10]

Before measuring, each query's rows from asyncpg are checked equal to what the data layer's own
function returns through aiopg, so both drivers answer the same question.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiopg
import asyncpg
from algoedge.config import MigrateSettings, load_settings
from algoedge.db import Database, marketplace, trades, users

from bench.api_load import raise_file_limit, seed, start_stack
from devtools.app import api_environment, migrated

#: The data layer's column lists, as its queries name them (checked against its functions' rows).
_TRADE_COLUMNS = (
    "id, account_id, symbol, side, volume, open_price, close_price, profit, "
    "opened_at, closed_at, created_at"
)
_BOT_COLUMNS = "id, name, description, strategy, status, monthly_price, created_at"
_USER_COLUMNS = "id, email, name, created_at, updated_at, email_reports"


@dataclass(frozen=True)
class Query:
    name: str
    #: psycopg2's placeholders, as the data layer writes it.
    sql: str
    #: The parameters of one run, for a user id.
    params: Callable[[int], list[Any]]
    returns_rows: bool = True


def _queries() -> list[Query]:
    trades_sql, _ = trades.trades_page_query(
        user_id=0, account_id=None, since=None, until=None, before=None, limit=21
    )
    return [
        Query("trades page (GET /trades)", trades_sql, lambda user: [user, 21]),
        Query(
            "active bots (GET /bots)",
            f"SELECT {_BOT_COLUMNS} FROM marketplace_bots WHERE id > %s AND status = %s "
            "ORDER BY id LIMIT %s",
            lambda user: [0, "active", 21],
        ),
        Query(
            "user by id (a user-cache miss)",
            f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s",
            lambda user: [user],
        ),
        Query(
            "profile update (PATCH /me)",
            "UPDATE users SET name = coalesce(%s, name), "
            "email_reports = coalesce(%s, email_reports), updated_at = clock_timestamp() "
            f"WHERE id = %s RETURNING {_USER_COLUMNS}",
            lambda user: [f"Trader {user}", None, user],
        ),
    ]


def dollar_placeholders(sql: str) -> str:
    """psycopg2's ``%s`` placeholders as PostgreSQL's ``$1, $2, …`` (asyncpg sends them as is)."""
    count = iter(range(1, sql.count("%s") + 1))
    return re.sub("%s", lambda _: f"${next(count)}", sql)


class Driver:
    name: str = ""

    async def run(self, query: Query, params: list[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Aiopg(Driver):
    """What ``algoedge.db.Database`` does for one query: a pooled connection, a cursor."""

    name = "aiopg"

    def __init__(self, pool: aiopg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, size: int, *, name: str = "aiopg") -> Aiopg:
        driver = cls(await aiopg.create_pool(url, minsize=size, maxsize=size, enable_hstore=False))
        driver.name = name
        return driver

    async def run(self, query: Query, params: list[Any]) -> list[tuple[Any, ...]]:
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(query.sql, params)
            return list(await cur.fetchall())

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Behind pgBouncer in transaction mode no session state survives a query: nothing to reset."""


class Asyncpg(Driver):
    """asyncpg's pool, as it would run behind pgBouncer 1.18 in transaction mode (no named
    prepared statements). With ``reset=False`` the pool skips the reset query it otherwise sends
    on every release (``RESET ALL``, ``UNLISTEN *``, …: one more round trip per query)."""

    def __init__(self, pool: asyncpg.Pool, name: str) -> None:
        self._pool = pool
        self.name = name
        self._sql: dict[str, str] = {}

    @classmethod
    async def open(
        cls, url: str, size: int, *, reset: bool = True, statement_cache: bool = False
    ) -> Asyncpg:
        pool = await asyncpg.create_pool(
            url,
            min_size=size,
            max_size=size,
            # asyncpg's default (100 named statements per connection) fails behind pgBouncer 1.18
            # in transaction mode: the next query may land on a server that never saw them.
            statement_cache_size=100 if statement_cache else 0,
            reset=None if reset else _no_reset,
        )
        name = "asyncpg" if reset else "asyncpg, no reset"
        return cls(pool, "asyncpg, cache, direct" if statement_cache else name)

    async def run(self, query: Query, params: list[Any]) -> list[tuple[Any, ...]]:
        sql = self._sql.get(query.sql)
        if sql is None:
            sql = self._sql[query.sql] = dollar_placeholders(query.sql)
        return [tuple(r) for r in await self._pool.fetch(sql, *params)]

    async def close(self) -> None:
        await self._pool.close()


async def check_same_rows(db: Database, driver: Driver, user_id: int) -> None:
    """asyncpg's rows of each read equal the data layer's (through aiopg): the same questions."""
    queries = {q.name: q for q in _queries()}
    expected: dict[str, list[Any]] = {
        "trades page (GET /trades)": await trades.list_trades(
            db, user_id=user_id, account_id=None, since=None, until=None, before=None, limit=21
        ),
        "active bots (GET /bots)": await marketplace.list_bots(
            db, status="active", after_id=None, limit=21
        ),
        "user by id (a user-cache miss)": [await users.get_user(db, user_id)],
    }
    for name, rows in expected.items():
        query = queries[name]
        got = await driver.run(query, query.params(user_id))
        assert [_fields(r) for r in rows] == got, (
            f"{driver.name} answered {name} differently from the data layer"
        )


def _fields(record: Any) -> tuple[Any, ...]:
    return tuple(getattr(record, f) for f in record.__dataclass_fields__)


@dataclass
class Measured:
    driver: str
    query: str
    queries: int
    seconds: float
    cpu_seconds: float
    latencies: list[float]

    def row(self, load: str) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        return (
            f"| {self.driver} | {self.query} | {self.queries / self.seconds:.0f} | "
            f"{self.cpu_seconds / self.queries * 1e6:.0f} | {p50:.2f} | {p99:.2f} | {load} |"
        )


async def measure(
    driver: Driver, query: Query, user_ids: Sequence[int], *, concurrency: int, duration: float
) -> Measured:
    latencies: list[float] = []
    stop_at = 0.0

    async def worker(n: int) -> None:
        i = n
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            await driver.run(query, query.params(user_ids[i % len(user_ids)]))
            latencies.append(time.perf_counter() - started)
            i += concurrency

    # Warm: every pooled connection opened, the server's plans and caches hot.
    stop_at = time.monotonic() + 1.0
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    latencies.clear()
    cpu, wall = time.process_time(), time.monotonic()
    stop_at = wall + duration
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return Measured(
        driver=driver.name,
        query=query.name,
        queries=len(latencies),
        seconds=time.monotonic() - wall,
        cpu_seconds=time.process_time() - cpu,
        latencies=latencies,
    )


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} / {five:.1f}"


async def benchmark(args: argparse.Namespace, bouncer_url: str, postgres_url: str) -> list[str]:
    await migrated(load_settings(MigrateSettings, {"ALGOEDGE_DATABASE_URL": bouncer_url}))
    seeded = await seed(
        postgres_url,
        user_count=args.users,
        trades_per_user=50,
        credentials_key=api_environment(bouncer_url, "redis://unused")["ALGOEDGE_CREDENTIALS_KEY"],
        cheap_hashes=True,
    )
    settings = load_settings(
        MigrateSettings, {"ALGOEDGE_DATABASE_URL": bouncer_url, "ALGOEDGE_DB_POOL_MIN": "1"}
    )
    db = await Database.connect(settings)
    openers: dict[str, Callable[[], Awaitable[Driver]]] = {
        "aiopg": lambda: Aiopg.open(bouncer_url, args.pool),
        "asyncpg": lambda: Asyncpg.open(bouncer_url, args.pool),
        "asyncpg, no reset": lambda: Asyncpg.open(bouncer_url, args.pool, reset=False),
        # For reference, what asyncpg is built for: its statement cache, no pgBouncer in the
        # way (pgBouncer >= 1.21 with max_prepared_statements would allow the cache through it).
        "asyncpg, cache, direct": lambda: Asyncpg.open(
            postgres_url, args.pool, reset=False, statement_cache=True
        ),
        "aiopg, direct": lambda: Aiopg.open(postgres_url, args.pool, name="aiopg, direct"),
    }
    try:
        check = await openers["asyncpg"]()
        try:
            await check_same_rows(db, check, seeded.user_ids[0])
        finally:
            await check.close()
    finally:
        await db.close()
    rows: list[str] = []
    for query in _queries():
        # Alternated, twice each, so a change in the machine's load shows as a spread.
        for name in [*openers, *openers]:
            driver = await openers[name]()
            try:
                result = await measure(
                    driver,
                    query,
                    seeded.user_ids,
                    concurrency=args.concurrency,
                    duration=args.duration,
                )
            finally:
                await driver.close()
            rows.append(result.row(load_average()))
            print(rows[-1], flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200, help="seeded users (50 trades each)")
    parser.add_argument("--concurrency", type=int, default=32, help="queries in flight")
    parser.add_argument("--pool", type=int, default=10, help="connections per driver's pool")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    args = parser.parse_args(argv)
    raise_file_limit()
    root = Path(tempfile.mkdtemp(prefix="algoedge-dbdrivers-"))
    root.chmod(0o755)  # postgres and pgbouncer run as the postgres user when we are root
    stack = start_stack(root)
    try:
        database = stack.postgres.database
        print(f"services up in {root}; load average {load_average()}", flush=True)
        rows = asyncio.run(benchmark(args, stack.bouncer.url, stack.postgres.url))
    finally:
        with contextlib.suppress(Exception):
            stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nOne process, {args.concurrency} queries in flight, pools of {args.pool}, "
        f"{args.duration:.0f} s per row, through pgBouncer (transaction pooling) to {database}:\n"
    )
    print(
        "| driver | query | queries/s | client CPU µs per query | p50 ms | p99 ms | load (1m / 5m) |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
