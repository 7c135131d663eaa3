"""In-app notifications of a user, newest first, each created once per key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2.extras import Json

from algoedge.db import Database
from algoedge.db.errors import NotFound


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class Notification:
    id: int
    kind: str
    body: dict[str, Any]
    read_at: datetime | None
    created_at: datetime


_COLUMNS = "id, kind, body, read_at, created_at"


async def add_notification(
    db: Database, *, user_id: int, key: str, kind: str, body: Mapping[str, Any]
) -> int | None:
    """Notify the user once per ``key`` (e.g. ``report:<id>``); the new id, None if it existed."""
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO notifications (user_id, key, kind, body) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (user_id, key) DO NOTHING RETURNING id",
            (user_id, key, kind, Json(dict(body))),
        )
        row = await cur.fetchone()
    return None if row is None else int(row[0])


async def list_notifications(
    db: Database,
    *,
    user_id: int,
    unread: bool | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[Notification]:
    """One page, newest first; ``unread`` True keeps the unread, False the read, None all."""
    where = ["user_id = %s"]
    params: list[Any] = [user_id]
    if unread is not None:
        where.append("read_at IS NULL" if unread else "read_at IS NOT NULL")
    if before is not None:
        where.append("(created_at, id) < (%s, %s)")
        params.extend(before)
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM notifications WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            [*params, limit],
        )
        return [Notification(*row) for row in await cur.fetchall()]


async def mark_read(db: Database, *, user_id: int, notification_id: int) -> None:
    """Mark one of the user's notifications read; marking it again keeps the first time."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE notifications SET read_at = coalesce(read_at, now()) "
            "WHERE id = %s AND user_id = %s",
            (notification_id, user_id),
        )
        if cur.rowcount == 0:
            raise NotFound(f"notification {notification_id}")
