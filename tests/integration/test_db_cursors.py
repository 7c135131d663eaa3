"""A query leaves no cyclic garbage behind (aiopg's Cursor and Transaction refer to each other)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import aiopg
import pytest
from algoedge.db import Database


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """What the cycle collector finds from here on, kept in gc.garbage instead of freed."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.garbage.clear()
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def cursors_in(garbage: list[object]) -> int:
    return sum(isinstance(o, aiopg.Cursor) for o in garbage)


async def test_should_free_cursors_by_reference_counting(
    db: Database, saved_garbage: list[object]
) -> None:
    for _ in range(20):
        async with db.cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.fetchone()
        async with db.transaction() as cur:
            await cur.execute("SELECT 2")
        assert await db.read_replica("SELECT 3") == [(3,)]
    gc.collect()
    assert cursors_in(saved_garbage) == 0
