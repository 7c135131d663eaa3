"""Durable record of Redis deletes that could not be made while Redis was unreachable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from algoedge.db import Database

PAGE = 500


@dataclass(frozen=True, slots=True)
class Invalidation:
    key: str
    recorded_at: datetime


async def record(db: Database, keys: Sequence[str]) -> None:
    """Remember ``keys`` for deletion; a key recorded again gets a new time (see :func:`done`)."""
    if not keys:
        return
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO cache_invalidations (key) SELECT unnest(%s::text[]) "
            "ON CONFLICT (key) DO UPDATE SET recorded_at = clock_timestamp()",
            (sorted(set(keys)),),
        )


async def pending(db: Database, limit: int = PAGE) -> list[Invalidation]:
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT key, recorded_at FROM cache_invalidations ORDER BY recorded_at LIMIT %s",
            (limit,),
        )
        return [Invalidation(key, recorded_at) for key, recorded_at in await cur.fetchall()]


async def done(db: Database, entries: Sequence[Invalidation]) -> None:
    """Forget entries whose keys were deleted; a key recorded again since it was read stays."""
    if not entries:
        return
    async with db.cursor() as cur:
        await cur.execute(
            "DELETE FROM cache_invalidations AS c "
            "USING unnest(%s::text[], %s::timestamptz[]) AS d(key, recorded_at) "
            "WHERE c.key = d.key AND c.recorded_at = d.recorded_at",
            ([e.key for e in entries], [e.recorded_at for e in entries]),
        )
