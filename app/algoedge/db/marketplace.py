"""The bot marketplace, signal providers, their signals, and who subscribes to or follows what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg2.errors

from algoedge.db import Database
from algoedge.db.errors import NotFound


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class Bot:
    id: int
    name: str
    description: str
    strategy: str
    status: str
    monthly_price: Decimal
    created_at: datetime


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class Provider:
    id: int
    name: str
    description: str
    status: str
    created_at: datetime


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class Signal:
    id: int
    provider_id: int
    symbol: str
    side: str
    entry_price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    created_at: datetime


_BOT = "id, name, description, strategy, status, monthly_price, created_at"
_PROVIDER = "id, name, description, status, created_at"
_SIGNAL = "id, provider_id, symbol, side, entry_price, stop_loss, take_profit, created_at"


async def list_bots(
    db: Database, *, status: str | None, after_id: int | None, limit: int
) -> list[Bot]:
    where, params = "id > %s", [after_id or 0]
    if status is not None:
        where += " AND status = %s"
        params.append(status)  # type: ignore[arg-type]
    rows = await db.read_replica(
        f"SELECT {_BOT} FROM marketplace_bots WHERE {where} ORDER BY id LIMIT %s",
        [*params, limit],
    )
    return [Bot(*row) for row in rows]


async def get_bot(db: Database, bot_id: int) -> Bot:
    rows = await db.read_replica(f"SELECT {_BOT} FROM marketplace_bots WHERE id = %s", (bot_id,))
    if not rows:
        raise NotFound(f"bot {bot_id}")
    return Bot(*rows[0])


async def create_bot(
    db: Database,
    *,
    name: str,
    description: str = "",
    strategy: str = "",
    status: str = "active",
    monthly_price: Decimal = Decimal(0),
) -> Bot:
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO marketplace_bots (name, description, strategy, status, monthly_price) "
            f"VALUES (%s, %s, %s, %s, %s) RETURNING {_BOT}",
            (name, description, strategy, status, monthly_price),
        )
        return Bot(*await cur.fetchone())


#: One statement (one round trip, autocommit) for a subscribe: the bot's and the account's checks,
#: the idempotent insert, and the subscription that already existed. Its snapshot is taken before
#: the insert, so a subscription another request committed meanwhile (the insert then does
#: nothing) is not seen here: :func:`subscribe` reads it with one more statement.
_SUBSCRIBE = (
    "WITH bot AS ("
    "SELECT id FROM marketplace_bots WHERE id = %(bot_id)s AND status = 'active'"
    "), account AS ("
    "SELECT id FROM mt_accounts WHERE id = %(account_id)s AND user_id = %(user_id)s"
    "), allowed AS ("
    "SELECT id FROM bot WHERE %(account_id)s::bigint IS NULL OR EXISTS (SELECT 1 FROM account)"
    "), created AS ("
    "INSERT INTO bot_subscriptions (user_id, bot_id, account_id) "
    "SELECT %(user_id)s, id, %(account_id)s::bigint FROM allowed "
    "ON CONFLICT (user_id, bot_id) DO NOTHING RETURNING id"
    ") SELECT EXISTS (SELECT 1 FROM bot), EXISTS (SELECT 1 FROM account), "
    "(SELECT id FROM created), "
    "(SELECT id FROM bot_subscriptions WHERE user_id = %(user_id)s AND bot_id = %(bot_id)s)"
)


async def subscribe(
    db: Database, *, user_id: int, bot_id: int, account_id: int | None
) -> tuple[int, bool]:
    """Subscribe (idempotently) to an active bot; returns (subscription id, created now).

    ``account_id``, when given, must be one of the user's own accounts; an unknown or inactive
    bot or someone else's account is NotFound (the bot is checked first).
    """
    params = {"user_id": user_id, "bot_id": bot_id, "account_id": account_id}
    async with db.cursor() as cur:
        await cur.execute(_SUBSCRIBE, params)
        bot_active, account_owned, created, existing = await cur.fetchone()
        if not bot_active:
            raise NotFound(f"bot {bot_id}")
        if account_id is not None and not account_owned:
            raise NotFound(f"account {account_id}")
        if created is not None:
            return int(created), True
        if existing is None:
            # Committed by a concurrent subscribe after this statement's snapshot was taken.
            await cur.execute(
                "SELECT id FROM bot_subscriptions WHERE user_id = %s AND bot_id = %s",
                (user_id, bot_id),
            )
            row = await cur.fetchone()
            if row is None:  # and gone again (the bot or the user deleted meanwhile)
                raise NotFound(f"bot {bot_id}")
            existing = row[0]
    return int(existing), False


async def list_providers(db: Database, *, after_id: int | None, limit: int) -> list[Provider]:
    rows = await db.read_replica(
        f"SELECT {_PROVIDER} FROM signal_providers WHERE id > %s AND status = 'active' "
        "ORDER BY id LIMIT %s",
        (after_id or 0, limit),
    )
    return [Provider(*row) for row in rows]


async def create_provider(db: Database, *, name: str, description: str = "") -> Provider:
    async with db.cursor() as cur:
        await cur.execute(
            f"INSERT INTO signal_providers (name, description) VALUES (%s, %s) RETURNING {_PROVIDER}",
            (name, description),
        )
        return Provider(*await cur.fetchone())


async def follow(db: Database, *, user_id: int, provider_id: int) -> tuple[int, bool]:
    """Follow an active provider (idempotently); returns (follow id, created now)."""
    try:
        async with db.cursor() as cur:
            await cur.execute(
                "INSERT INTO follows (user_id, provider_id) "
                "SELECT %s, id FROM signal_providers WHERE id = %s AND status = 'active' "
                "ON CONFLICT (user_id, provider_id) DO NOTHING RETURNING id",
                (user_id, provider_id),
            )
            created = await cur.fetchone()
            if created is not None:
                return int(created[0]), True
            await cur.execute(
                "SELECT f.id FROM follows f JOIN signal_providers p ON p.id = f.provider_id "
                "WHERE f.user_id = %s AND f.provider_id = %s AND p.status = 'active'",
                (user_id, provider_id),
            )
            existing = await cur.fetchone()
    except psycopg2.errors.ForeignKeyViolation:
        raise NotFound(f"provider {provider_id}") from None
    if existing is None:
        raise NotFound(f"provider {provider_id}")
    return int(existing[0]), False


def signals_page_query(
    *,
    user_id: int,
    provider_id: int | None,
    since: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """SQL and parameters of one page, newest first (pure, so a test can EXPLAIN it)."""
    if provider_id is not None:
        where, params = ["provider_id = %s"], [provider_id]
    else:
        # No provider named: the signals of every provider the user follows.
        where = ["provider_id IN (SELECT provider_id FROM follows WHERE user_id = %s)"]
        params = [user_id]
    extra: list[Any] = []
    if since is not None:
        where.append("created_at >= %s")
        extra.append(since)
    if before is not None:
        where.append("(created_at, id) < (%s, %s)")
        extra.extend(before)
    sql = (
        f"SELECT {_SIGNAL} FROM signals WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT %s"
    )
    return sql, [*params, *extra, limit]


async def list_signals(
    db: Database,
    *,
    user_id: int,
    provider_id: int | None,
    since: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[Signal]:
    sql, params = signals_page_query(
        user_id=user_id, provider_id=provider_id, since=since, before=before, limit=limit
    )
    return [Signal(*row) for row in await db.read_replica(sql, params)]


async def provider_exists(db: Database, provider_id: int) -> bool:
    rows = await db.read_replica(
        "SELECT 1 FROM signal_providers WHERE id = %s AND status = 'active'", (provider_id,)
    )
    return bool(rows)


async def publish_signal(
    db: Database,
    *,
    provider_id: int,
    symbol: str,
    side: str,
    entry_price: Decimal,
    stop_loss: Decimal | None = None,
    take_profit: Decimal | None = None,
) -> Signal:
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO signals (provider_id, symbol, side, entry_price, stop_loss, take_profit) "
            f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_SIGNAL}",
            (provider_id, symbol, side, entry_price, stop_loss, take_profit),
        )
        return Signal(*await cur.fetchone())
