"""The one way the data layer opens an aiopg cursor: on a pooled connection, left for reference
counting to free.

aiopg's ``Cursor`` and its ``Transaction`` refer to each other, so every cursor, with its
psycopg2 cursor, would otherwise be garbage only the cycle collector frees: five objects and more
per query. Under load those made young collections of 20,000 objects that held the API's event
loop for up to 110 ms (docs/benchmarks.md, "the cursors' reference cycle").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiopg


@asynccontextmanager
async def pooled_cursor(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """A cursor on a connection of ``pool``; both go back when the block ends."""
    cursor: aiopg.Cursor | None = None
    try:
        async with pool.acquire() as conn, conn.cursor() as cursor:
            yield cursor
    finally:
        if cursor is not None:
            # Its Transaction (begin/commit) is done with by now: the block, any cursor.begin()
            # in it included, has ended. Dropping it breaks the cycle.
            cursor._transaction = None  # type: ignore[assignment]
