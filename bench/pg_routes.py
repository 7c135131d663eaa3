"""Client CPU of the data layer's calls on the API's Postgres routes, one call at a time.

What the API process pays for ``GET /api/v1/trades`` (the page's query, its rows as ``Trade``s and
the rendered body), ``PATCH /api/v1/me`` (the update) and a subscribe (already subscribed, and
new), through pgBouncer, in this process: its CPU time per call, best and median of ``--batches``
batches. Then the rows → ``Trade`` → page → body chain alone on fixed rows, with the body's
SHA-256 so two commits can be held byte-identical. Sequential calls pay a wake-up per round trip
that a loaded API shares between requests, so a saved round trip shows larger here than in
``bench.api_load``; compare commits with this, not with absolute numbers.

    .venv/bin/python -m bench.pg_routes [--calls 1000] [--batches 5]

docs/benchmarks.md, "Third pass: the Postgres routes".
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from algoedge.api.io import page, render, time_cursor
from algoedge.config import MigrateSettings, load_settings
from algoedge.db import Database, marketplace, trades, users

from bench.api_load import Stack, seed, start_stack
from devtools.app import api_environment, migrated

PAGE = 20


def cpu_per_call(calls: int, batches: int, run: Callable[[], object]) -> tuple[float, float]:
    """Best and median µs of CPU per call of ``run`` (synchronous), over ``batches``."""
    results = []
    for _ in range(batches):
        started = time.process_time()
        for _ in range(calls):
            run()
        results.append(1e6 * (time.process_time() - started) / calls)
    return min(results), statistics.median(results)


async def async_cpu_per_call(
    calls: int, batches: int, run: Callable[[int], Awaitable[Any]]
) -> tuple[float, float]:
    """Best and median µs of CPU per awaited ``run(n)``, n counting the calls from 0."""
    results = []
    n = 0
    for _ in range(batches):
        started = time.process_time()
        for _ in range(calls):
            await run(n)
            n += 1
        results.append(1e6 * (time.process_time() - started) / calls)
    return min(results), statistics.median(results)


def chain_rows() -> list[tuple[Any, ...]]:
    """A page's rows (21: one more than the page) as psycopg2 returns them."""
    now = datetime(2026, 12, 2, 14, 10, 10, 488041, tzinfo=UTC)
    return [
        (
            1000 - i,
            2,
            "USDJPY",
            "buy",
            Decimal("4.69"),
            Decimal("1603.46000000"),
            Decimal("1604.12000000") if i > 1 else None,
            Decimal("12.40") if i > 1 else None,
            now - timedelta(minutes=37 * i),
            now if i > 1 else None,
            now - timedelta(minutes=i),
        )
        for i in range(PAGE + 1)
    ]


def chain(rows: Sequence[tuple[Any, ...]]) -> bytes:
    body = render(page([trades.Trade(*row) for row in rows], limit=PAGE, cursor_of=time_cursor))
    return bytes(body.body)  # type: ignore[arg-type]


async def measure(stack: Stack, *, calls: int, batches: int) -> list[str]:
    env = api_environment(stack.bouncer.url, stack.redis.url)
    settings = load_settings(MigrateSettings, {"ALGOEDGE_DATABASE_URL": stack.bouncer.url})
    await migrated(settings)
    seeded = await seed(
        stack.postgres.url,
        user_count=150,
        trades_per_user=50,
        credentials_key=env["ALGOEDGE_CREDENTIALS_KEY"],
        cheap_hashes=True,
    )
    stack.postgres.psql("ANALYZE", database=stack.postgres.database)
    db = await Database.connect(settings)
    try:
        user, bot = seeded.user_ids[0], seeded.active_bot_ids[0]

        async def trades_page(_: int) -> None:
            rows = await trades.list_trades(
                db, user_id=user, account_id=None, since=None, until=None, before=None, limit=21
            )
            render(page(rows, limit=PAGE, cursor_of=time_cursor))

        async def patch(_: int) -> None:
            await users.update_profile(db, user, name="Trader")

        async def subscribed(_: int) -> None:
            await marketplace.subscribe(db, user_id=user, bot_id=bot, account_id=None)

        fresh = [(u, b) for b in seeded.active_bot_ids for u in seeded.user_ids[1:]]

        async def subscribe_new(n: int) -> None:
            user_id, bot_id = fresh[n]
            await marketplace.subscribe(db, user_id=user_id, bot_id=bot_id, account_id=None)

        await subscribed(0)
        for n in range(300):  # warm: the pool filled, pgBouncer's server connections open
            await trades_page(n)
            await patch(n)
            await subscribed(n)
        cases: list[tuple[str, Callable[[int], Awaitable[None]], int]] = [
            ("GET /trades: query, rows, render", trades_page, calls),
            ("PATCH /me: the update", patch, calls),
            ("subscribe, already subscribed", subscribed, calls),
            ("subscribe, new", subscribe_new, min(calls, len(fresh) // batches)),
        ]
        lines = []
        for label, run, count in cases:
            best, median = await async_cpu_per_call(count, batches, run)
            lines.append(f"| {label} | {best:.1f} | {median:.1f} |")
        return lines
    finally:
        await db.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_routes", description=__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="calls per batch (default 1000)")
    parser.add_argument("--batches", type=int, default=5, help="batches (default 5)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.batches < 1:
        parser.error("--calls and --batches must be positive")
    rows = chain_rows()
    body = chain(rows)
    best, median = cpu_per_call(5 * args.calls, args.batches, lambda: chain(rows))
    root = Path(tempfile.mkdtemp(prefix="algoedge-pg-routes-"))
    root.chmod(0o755)  # postgres and pgbouncer run as the postgres user when we are root
    stack = start_stack(root)
    try:
        lines = asyncio.run(measure(stack, calls=args.calls, batches=args.batches))
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("| call | best µs CPU | median µs CPU |")
    print("|---|---:|---:|")
    print("\n".join(lines))
    print(f"| rows → Trade → page → body, 21 rows | {best:.1f} | {median:.1f} |")
    print(f"\nbody: {len(body)} bytes, SHA-256 {hashlib.sha256(body).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
