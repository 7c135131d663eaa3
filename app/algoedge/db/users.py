"""Users, their server-side sessions, and the welcome e-mail recorded with each new user."""

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
    #: Whether the user asked for their reports by e-mail (opt-in).
    email_reports: bool


_USER_COLUMNS = "id, email, name, created_at, updated_at, email_reports"
_USER_FIELDS = len(_USER_COLUMNS.split(","))


@dataclass(frozen=True, slots=True)
class NewUser:
    user: User
    #: The pending welcome e-mail's email_deliveries row, for the queue's send task.
    welcome_delivery_id: int


async def create_user(db: Database, *, email: str, name: str, password_hash: str) -> NewUser:
    """Insert the user and their pending welcome e-mail in one statement: both or neither."""
    try:
        async with db.cursor() as cur:
            await cur.execute(
                "WITH new_user AS ("
                "INSERT INTO users (email, name, password_hash) VALUES (%s, %s, %s) "
                f"RETURNING {_USER_COLUMNS}"
                "), welcome AS ("
                "INSERT INTO email_deliveries (key, user_id, kind) "
                "SELECT 'welcome:' || id, id, 'welcome' FROM new_user RETURNING id"
                f") SELECT {_USER_COLUMNS}, (SELECT id FROM welcome) FROM new_user",
                (email, name, password_hash),
            )
            row = await cur.fetchone()
    except psycopg2.errors.UniqueViolation:
        raise Conflict("email already registered") from None
    return NewUser(user=User(*row[:_USER_FIELDS]), welcome_delivery_id=int(row[_USER_FIELDS]))


async def mark_email_enqueued(db: Database, delivery_id: int) -> None:
    """Record that a send task of a pending e-mail is on the queue (the sweeper reads it)."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE email_deliveries SET enqueued_at = now() WHERE id = %s AND status = 'pending'",
            (delivery_id,),
        )


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
    return None if row is None else (User(*row[:_USER_FIELDS]), row[_USER_FIELDS])


async def update_profile(
    db: Database, user_id: int, *, name: str | None = None, email_reports: bool | None = None
) -> User:
    """Change what is given (None leaves a field as it is); updated_at moves on either way."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE users SET name = coalesce(%s, name), "
            "email_reports = coalesce(%s, email_reports), updated_at = clock_timestamp() "
            f"WHERE id = %s RETURNING {_USER_COLUMNS}",
            (name, email_reports, user_id),
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
