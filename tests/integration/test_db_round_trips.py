"""Statements (each one round trip to pgBouncer) the data layer sends for the API's Postgres routes,
counted on the psycopg2 connections under a real pool, and what the one-statement subscribe
answers in every case, concurrent subscribes of the same bot included."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiopg
import psycopg2.extensions
import pytest
from algoedge.config import MigrateSettings
from algoedge.db import Database, accounts, marketplace, trades, users
from algoedge.db.errors import NotFound

from devtools.app import migrated

#: Every statement any counted connection sent, in order.
_SENT: list[str] = []


class _CountingCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
    """psycopg2's cursor, noting each statement before sending it (one round trip each)."""

    def execute(self, query: Any, vars: Any = None) -> Any:
        _SENT.append(str(query))
        return super().execute(query, vars)


@pytest.fixture
async def counted(migrate_settings: MigrateSettings) -> AsyncIterator[Database]:
    """The data layer on a pool of 4 whose connections count what they send."""
    await migrated(migrate_settings)
    pool = await aiopg.create_pool(
        migrate_settings.database_url,
        minsize=1,
        maxsize=4,
        enable_hstore=False,
        cursor_factory=_CountingCursor,
    )
    database = Database(pool)
    yield database
    await database.close()


async def statements(call: Callable[[], Awaitable[Any]]) -> tuple[Any, list[str]]:
    """What ``call()`` returned (or raised) and the statements it sent."""
    _SENT.clear()
    try:
        result: Any = await call()
    except NotFound as error:
        result = error
    return result, list(_SENT)


async def new_user(db: Database) -> int:
    made = await users.create_user(
        db, email=f"{secrets.token_hex(4)}@example.com", name="Trader", password_hash="x"
    )
    return made.user.id


async def new_account(db: Database, user_id: int) -> int:
    account = await accounts.link_account(
        db,
        user_id=user_id,
        login=str(secrets.randbelow(10**8) + 10**7),
        server="Demo-1",
        platform="mt5",
        encrypted_password=b"secret",
    )
    return account.id


async def test_should_subscribe_with_one_statement_in_every_case(counted: Database) -> None:
    db = counted
    user, other = await new_user(db), await new_user(db)
    mine, theirs = await new_account(db, user), await new_account(db, other)
    bot = (await marketplace.create_bot(db, name="Scalper")).id
    second = (await marketplace.create_bot(db, name="Grid")).id
    paused = (await marketplace.create_bot(db, name="Paused", status="paused")).id

    def subscribe(bot_id: int, account_id: int | None = None) -> Callable[[], Awaitable[Any]]:
        return lambda: marketplace.subscribe(db, user_id=user, bot_id=bot_id, account_id=account_id)

    (created_id, created), sent = await statements(subscribe(bot))
    assert created is True
    assert len(sent) == 1, sent
    again, sent = await statements(subscribe(bot))
    assert again == (created_id, False)
    assert len(sent) == 1, sent
    (with_account, created), sent = await statements(subscribe(second, mine))
    assert created is True
    assert with_account != created_id
    assert len(sent) == 1, sent

    refused, sent = await statements(subscribe(paused))
    assert isinstance(refused, NotFound)
    assert str(refused) == f"bot {paused}"
    assert len(sent) == 1, sent
    refused, sent = await statements(subscribe(424242, theirs))
    # The bot is checked first, as before: an unknown bot is what the caller hears about.
    assert isinstance(refused, NotFound)
    assert str(refused) == "bot 424242"
    refused, sent = await statements(subscribe(bot, theirs))
    assert isinstance(refused, NotFound)
    assert str(refused) == f"account {theirs}"
    assert len(sent) == 1, sent

    # Nothing was written by the refused ones: the user holds exactly the two subscriptions.
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT bot_id, account_id FROM bot_subscriptions WHERE user_id = %s ORDER BY id",
            (user,),
        )
        assert await cur.fetchall() == [(bot, None), (second, mine)]


async def test_should_give_concurrent_subscribes_one_subscription(counted: Database) -> None:
    db = counted
    bot = (await marketplace.create_bot(db, name="Scalper")).id
    for _ in range(5):
        user = await new_user(db)
        answers = await asyncio.gather(
            *(
                marketplace.subscribe(db, user_id=user, bot_id=bot, account_id=None)
                for _ in range(8)
            )
        )
        assert len({subscription_id for subscription_id, _ in answers}) == 1, answers
        assert sum(created for _, created in answers) == 1, answers


async def test_should_read_a_trades_page_and_update_a_profile_with_one_statement_each(
    counted: Database,
) -> None:
    db = counted
    user = await new_user(db)
    account = await new_account(db, user)
    opened = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    for n in range(3):
        await trades.record_trade(
            db,
            account_id=account,
            symbol="EURUSD",
            side="buy",
            volume=Decimal("0.10"),
            open_price=Decimal("1.08500000"),
            opened_at=opened + timedelta(minutes=n),
        )
    page, sent = await statements(
        lambda: trades.list_trades(
            db, user_id=user, account_id=None, since=None, until=None, before=None, limit=21
        )
    )
    assert [t.opened_at for t in page] == [opened + timedelta(minutes=n) for n in (2, 1, 0)]
    assert len(sent) == 1, sent
    updated, sent = await statements(lambda: users.update_profile(db, user, name="Renamed"))
    assert updated.name == "Renamed"
    assert len(sent) == 1, sent
