"""The data layer on a process that holds many descriptors, as a busy API pod does."""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Iterator

import pytest
from algoedge.config import MigrateSettings
from algoedge.db import Database, users
from algoedge.db.errors import Conflict
from algoedge.db.migrate import load_migrations, migrate


@pytest.fixture
def descriptors_above_1023() -> Iterator[None]:
    """Occupy descriptors so that the next connections get numbers above 1023."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1400:
        pytest.skip(f"the hard RLIMIT_NOFILE ({hard}) leaves no room above descriptor 1023")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pipes = [os.pipe() for _ in range(600)]
    try:
        yield
    finally:
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_should_report_a_database_error_promptly_on_a_high_descriptor(
    migrate_settings: MigrateSettings, descriptors_above_1023: None
) -> None:
    db = await Database.connect(migrate_settings)
    try:
        await migrate(db, load_migrations())
        await users.create_user(db, email="dup@example.com", name="A", password_hash="x")
        # aiopg probes the descriptor with select() after an error; above 1023 that used to
        # leave the query waiting for its timeout. It must be the Conflict, and soon.
        with pytest.raises(Conflict):
            await asyncio.wait_for(
                users.create_user(db, email="dup@example.com", name="B", password_hash="x"),
                timeout=5,
            )
    finally:
        await db.close()
