"""Users and their server-side sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg2.errors

from algoedge.db import Database
from algoedge.db.errors import Conflict, NotFound


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


_USER_COLUMNS = "id, email, name, created_at, updated_at"


async def create_user(db: Database, *, email: str, name: str, password_hash: str) -> User:
    try:
        async with db.cursor() as cur:
            await cur.execute(
                f"INSERT INTO users (email, name, password_hash) VALUES (%s, %s, %s) "
                f"RETURNING {_USER_COLUMNS}",
                (email, name, password_hash),
            )
            return User(*await cur.fetchone())
    except psycopg2.errors.UniqueViolation:
        raise Conflict("email already registered") from None


async def get_user(db: Database, user_id: int) -> User:
    async with db.cursor() as cur:
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"user {user_id}")
    return User(*row)


async def get_login(db: Database, email: str) -> tuple[User, str] | None:
    """The user with this email and their password hash, or None."""
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE email = %s",
            (email,),
        )
        row = await cur.fetchone()
    return None if row is None else (User(*row[:5]), row[5])


async def rename_user(db: Database, user_id: int, name: str) -> User:
    async with db.cursor() as cur:
        await cur.execute(
            f"UPDATE users SET name = %s, updated_at = clock_timestamp() WHERE id = %s "
            f"RETURNING {_USER_COLUMNS}",
            (name, user_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"user {user_id}")
    return User(*row)


async def record_session(db: Database, *, jti: str, user_id: int, expires_at: datetime) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO sessions (jti, user_id, expires_at) VALUES (%s, %s, %s)",
            (jti, user_id, expires_at),
        )


async def revoke_session(db: Database, jti: str) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE sessions SET revoked_at = now() WHERE jti = %s AND revoked_at IS NULL", (jti,)
        )


async def session_active(db: Database, jti: str) -> int | None:
    """The user id of a live (unrevoked, unexpired) session, or None."""
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT user_id FROM sessions WHERE jti = %s AND revoked_at IS NULL AND expires_at > now()",
            (jti,),
        )
        row = await cur.fetchone()
    return None if row is None else int(row[0])
