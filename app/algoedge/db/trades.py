"""Trades of a user's accounts: newest first by the keyset (created_at, id) for listings, and a
period's closed trades in closing order by (closed_at, id) for reports and their CSV."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from algoedge.db import Database
from algoedge.db.errors import NotFound


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class Trade:
    id: int
    account_id: int
    symbol: str
    side: str
    volume: Decimal
    open_price: Decimal
    close_price: Decimal | None
    profit: Decimal | None
    opened_at: datetime
    closed_at: datetime | None
    created_at: datetime


_COLUMNS = (
    "id, account_id, symbol, side, volume, open_price, close_price, profit, "
    "opened_at, closed_at, created_at"
)


def trades_page_query(
    *,
    user_id: int,
    account_id: int | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """SQL and parameters of one page (pure, so a test can EXPLAIN exactly what runs)."""
    where = ["user_id = %s"]
    params: list[Any] = [user_id]
    if account_id is not None:
        where.append("account_id = %s")
        params.append(account_id)
    if since is not None:
        where.append("created_at >= %s")
        params.append(since)
    if until is not None:
        where.append("created_at < %s")
        params.append(until)
    if before is not None:
        where.append("(created_at, id) < (%s, %s)")
        params.extend(before)
    params.append(limit)
    sql = (
        f"SELECT {_COLUMNS} FROM trades WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT %s"
    )
    return sql, params


async def list_trades(
    db: Database,
    *,
    user_id: int,
    account_id: int | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[Trade]:
    """One page; ``before`` is the (created_at, id) of the previous page's last trade."""
    sql, params = trades_page_query(
        user_id=user_id, account_id=account_id, since=since, until=until, before=before, limit=limit
    )
    # The replica: trades are written by the bridge, never by the user reading them.
    return [Trade(*row) for row in await db.read_replica(sql, params)]


def closed_trades_page_query(
    *, user_id: int, start: datetime, end: datetime, after: tuple[datetime, int] | None, limit: int
) -> tuple[str, list[Any]]:
    """SQL and parameters of one page of closed trades (pure, so a test can EXPLAIN it)."""
    # closed_at IS NOT NULL repeats what the range implies so the planner matches the partial
    # index trades_user_closed (user_id, closed_at, id) without having to prove it.
    where = ["user_id = %s", "closed_at IS NOT NULL", "closed_at >= %s", "closed_at < %s"]
    params: list[Any] = [user_id, start, end]
    if after is not None:
        where.append("(closed_at, id) > (%s, %s)")
        params.extend(after)
    params.append(limit)
    sql = (
        f"SELECT {_COLUMNS} FROM trades WHERE {' AND '.join(where)} ORDER BY closed_at, id LIMIT %s"
    )
    return sql, params


async def closed_trades_page(
    db: Database,
    *,
    user_id: int,
    start: datetime,
    end: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Trade]:
    """The user's trades closed in ``[start, end)``, oldest closing first, one page at a time.

    ``after`` is the (closed_at, id) of the previous page's last trade (None for the first page);
    a page shorter than ``limit`` is the last. Each page is its own statement, so a long period
    holds neither a transaction nor the whole period in memory.
    """
    sql, params = closed_trades_page_query(
        user_id=user_id, start=start, end=end, after=after, limit=limit
    )
    # The replica: the CSV download and report generation are the heaviest reads there are.
    return [Trade(*row) for row in await db.read_replica(sql, params)]


async def record_trade(
    db: Database,
    *,
    account_id: int,
    symbol: str,
    side: str,
    volume: Decimal,
    open_price: Decimal,
    opened_at: datetime,
    close_price: Decimal | None = None,
    profit: Decimal | None = None,
    closed_at: datetime | None = None,
) -> Trade:
    """Store a trade of ``account_id`` (its owner comes from the account, not the caller)."""
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO trades (account_id, user_id, symbol, side, volume, open_price, "
            "close_price, profit, opened_at, closed_at) "
            "SELECT %s, user_id, %s, %s, %s, %s, %s, %s, %s, %s FROM mt_accounts WHERE id = %s "
            f"RETURNING {_COLUMNS}",
            (
                account_id,
                symbol,
                side,
                volume,
                open_price,
                close_price,
                profit,
                opened_at,
                closed_at,
                account_id,
            ),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"account {account_id}")
    return Trade(*row)
