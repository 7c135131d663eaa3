"""The bridge's reads and writes: accounts it must connect, their connection state, MetaAPI
removals, and the trades it records from deals (idempotent per account and MetaAPI position)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from algoedge.db import Database


@dataclass(frozen=True, slots=True)
class LinkedAccount:
    """What a bridge needs of a linked account (never the password; that is read on demand)."""

    id: int
    user_id: int
    login: str
    server: str
    platform: str
    state: str
    credentials_version: int
    metaapi_account_id: str | None


@dataclass(frozen=True, slots=True)
class StateChange:
    """A connection state as written: what ``account.status`` carries to the user's sockets."""

    account_id: int
    user_id: int
    state: str
    since: datetime
    last_error: str | None


async def linked_accounts(db: Database) -> list[LinkedAccount]:
    """Every linked account, by id (the whole table: the bridge shards it by ownership)."""
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT id, user_id, login, server, platform, state, credentials_version, "
            "metaapi_account_id FROM mt_accounts ORDER BY id"
        )
        return [LinkedAccount(*row) for row in await cur.fetchall()]


async def set_state(
    db: Database, *, account_id: int, version: int, state: str, error: str | None = None
) -> StateChange | None:
    """Record a connection state; None when nothing changed or the credentials moved on."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE mt_accounts SET state = %s, last_error = %s, state_since = now(), "
            "updated_at = now() WHERE id = %s AND credentials_version = %s "
            "AND (state <> %s OR last_error IS DISTINCT FROM %s) "
            "RETURNING id, user_id, state, state_since, last_error",
            (state, _clip(error), account_id, version, state, _clip(error)),
        )
        row = await cur.fetchone()
    return StateChange(*row) if row else None


async def store_metaapi_id(
    db: Database, *, account_id: int, version: int, metaapi_account_id: str
) -> bool:
    """Remember the MetaAPI account made for these credentials; False if they changed or are gone."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE mt_accounts SET metaapi_account_id = %s, updated_at = now() "
            "WHERE id = %s AND credentials_version = %s AND metaapi_account_id IS NULL",
            (metaapi_account_id, account_id, version),
        )
        return bool(cur.rowcount)


async def pending_removals(db: Database, *, limit: int) -> list[str]:
    """MetaAPI accounts to undeploy and delete, oldest request first."""
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT metaapi_account_id FROM metaapi_removals ORDER BY requested_at LIMIT %s",
            (limit,),
        )
        return [str(row[0]) for row in await cur.fetchall()]


async def request_removal(db: Database, metaapi_account_id: str) -> None:
    """Queue a MetaAPI account for removal (idempotent)."""
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO metaapi_removals (metaapi_account_id) VALUES (%s) ON CONFLICT DO NOTHING",
            (metaapi_account_id,),
        )


async def finish_removal(db: Database, metaapi_account_id: str) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "DELETE FROM metaapi_removals WHERE metaapi_account_id = %s", (metaapi_account_id,)
        )


async def fail_removal(db: Database, metaapi_account_id: str, error: str) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE metaapi_removals SET attempts = attempts + 1, last_error = %s, "
            "requested_at = now() WHERE metaapi_account_id = %s",
            (_clip(error), metaapi_account_id),
        )


@dataclass(frozen=True, slots=True)
class RecordedTrade:
    """A trade row the bridge created or closed: what ``trade.opened`` / ``trade.closed`` carry."""

    id: int
    account_id: int
    user_id: int
    symbol: str
    side: str
    volume: Decimal
    open_price: Decimal
    close_price: Decimal | None
    profit: Decimal | None
    opened_at: datetime
    closed_at: datetime | None


_TRADE = (
    "id, account_id, user_id, symbol, side, volume, open_price, close_price, profit, "
    "opened_at, closed_at"
)


async def record_open(
    db: Database,
    *,
    account_id: int,
    position_id: str,
    symbol: str,
    side: str,
    volume: Decimal,
    price: Decimal,
    opened_at: datetime,
) -> RecordedTrade | None:
    """Insert the trade of a position's entry deal; None when it was recorded before."""
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO trades (account_id, user_id, metaapi_position_id, symbol, side, volume, "
            "open_price, opened_at) SELECT id, user_id, %s, %s, %s, %s, %s, %s FROM mt_accounts "
            "WHERE id = %s ON CONFLICT (account_id, metaapi_position_id) DO NOTHING "
            f"RETURNING {_TRADE}",
            (position_id, symbol, side, volume, price, opened_at, account_id),
        )
        row = await cur.fetchone()
    return RecordedTrade(*row) if row else None


async def record_close(
    db: Database,
    *,
    account_id: int,
    position_id: str,
    price: Decimal,
    profit: Decimal,
    closed_at: datetime,
) -> RecordedTrade | None:
    """Close the position's open trade; None when it is closed already or was never opened here."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE trades SET close_price = %s, profit = %s, closed_at = %s "
            "WHERE account_id = %s AND metaapi_position_id = %s AND closed_at IS NULL "
            f"RETURNING {_TRADE}",
            (price, profit, closed_at, account_id, position_id),
        )
        row = await cur.fetchone()
    return RecordedTrade(*row) if row else None


def _clip(error: str | None) -> str | None:
    return None if error is None else " ".join(error.split())[:500]
