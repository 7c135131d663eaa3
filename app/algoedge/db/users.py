"""Users, their server-side sessions, and the e-mail recorded with each registration."""

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


@dataclass(frozen=True, slots=True)
class Registration:
    """What a registration did; the API answers the same whichever it was (docs/security.md)."""

    #: True when a user was created, False when the e-mail was taken already.
    created: bool
    #: The e-mail recorded for the send task: the welcome for a new user, or the owner's notice
    #: of the attempt (at most one a day); None when that notice went out today already.
    delivery_id: int | None


async def register_user(db: Database, *, email: str, name: str, password_hash: str) -> Registration:
    """Create the user with their welcome e-mail or, when the e-mail is taken, record a notice to
    its owner instead; one statement either way, so both cost about the same."""
    async with db.cursor() as cur:
        await cur.execute(
            "WITH new_user AS ("
            "INSERT INTO users (email, name, password_hash) VALUES (%(email)s, %(name)s, %(hash)s) "
            "ON CONFLICT (email) DO NOTHING RETURNING id"
            "), owner AS ("
            "SELECT id FROM users WHERE email = %(email)s AND NOT EXISTS (SELECT 1 FROM new_user)"
            "), mail AS ("
            "INSERT INTO email_deliveries (key, user_id, kind) "
            "SELECT 'welcome:' || id, id, 'welcome' FROM new_user UNION ALL "
            "SELECT 'registration_attempt:' || id || ':' "
            "|| to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'), id, 'registration_attempt' "
            "FROM owner ON CONFLICT (key) DO NOTHING RETURNING id"
            ") SELECT EXISTS (SELECT 1 FROM new_user), (SELECT id FROM mail)",
            {"email": email, "name": name, "hash": password_hash},
        )
        row = await cur.fetchone()
    return Registration(created=bool(row[0]), delivery_id=None if row[1] is None else int(row[1]))


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


async def prune_sessions(db: Database, *, limit: int) -> int:
    """Delete up to ``limit`` expired sessions (revoked or not: past ``expires_at`` their token
    is refused by its own ``exp``); how many went."""
    async with db.cursor() as cur:
        await cur.execute(
            "DELETE FROM sessions WHERE jti IN "
            "(SELECT jti FROM sessions WHERE expires_at < now() LIMIT %s)",
            (limit,),
        )
        return int(cur.rowcount)
