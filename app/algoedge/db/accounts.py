"""Linked MetaTrader accounts: a user's own, never anyone else's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg2.errors

from algoedge.db import Database
from algoedge.db.errors import Conflict, NotFound


@dataclass(frozen=True, slots=True)
class MtAccount:
    id: int
    user_id: int
    login: str
    server: str
    platform: str
    state: str
    created_at: datetime


_COLUMNS = "id, user_id, login, server, platform, state, created_at"


async def link_account(
    db: Database, *, user_id: int, login: str, server: str, platform: str, encrypted_password: bytes
) -> MtAccount:
    try:
        async with db.cursor() as cur:
            await cur.execute(
                "INSERT INTO mt_accounts (user_id, login, server, platform, encrypted_password) "
                f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (user_id, login, server, platform, encrypted_password),
            )
            return MtAccount(*await cur.fetchone())
    except psycopg2.errors.UniqueViolation:
        raise Conflict(f"account {login} on {server} is already linked") from None


async def list_accounts(
    db: Database, *, user_id: int, after_id: int | None, limit: int
) -> list[MtAccount]:
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM mt_accounts WHERE user_id = %s AND id > %s "
            "ORDER BY id LIMIT %s",
            (user_id, after_id or 0, limit),
        )
        return [MtAccount(*row) for row in await cur.fetchall()]


async def get_account(db: Database, *, user_id: int, account_id: int) -> MtAccount:
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM mt_accounts WHERE id = %s AND user_id = %s",
            (account_id, user_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"account {account_id}")
    return MtAccount(*row)


async def unlink_account(db: Database, *, user_id: int, account_id: int) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "DELETE FROM mt_accounts WHERE id = %s AND user_id = %s", (account_id, user_id)
        )
        if cur.rowcount == 0:
            raise NotFound(f"account {account_id}")


async def count_linked_accounts(db: Database) -> int:
    """Every linked account of every user: the demand the bridge must serve."""
    async with db.cursor() as cur:
        await cur.execute("SELECT count(*) FROM mt_accounts")
        row = await cur.fetchone()
    return int(row[0])


async def read_encrypted_password(db: Database, account_id: int) -> bytes:
    """For the bridge only: the account's encrypted trading password."""
    async with db.cursor() as cur:
        await cur.execute("SELECT encrypted_password FROM mt_accounts WHERE id = %s", (account_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"account {account_id}")
    return bytes(row[0])
