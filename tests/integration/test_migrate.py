"""Migrations through pgBouncer: applied once, safe from two migrators at once, strict about history."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from algoedge.config import MigrateSettings
from algoedge.db import Database
from algoedge.db.migrate import Migration, MigrationError, load_migrations, migrate

SLOW_FIRST = [
    # The sleep keeps the first migrator inside the lock long enough for the second to arrive.
    Migration(
        1, "slow_table", "SELECT pg_sleep(0.5); CREATE TABLE things (id int PRIMARY KEY, x int);"
    ),
    Migration(
        2,
        "things_x",
        "-- algoedge:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS things_x ON things (x);",
    ),
]


async def tables(db: Database) -> set[str]:
    async with db.cursor() as cur:
        await cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in await cur.fetchall()}


async def test_should_apply_the_packaged_migrations_once(db: Database) -> None:
    packaged = load_migrations()
    assert [m.version for m in await migrate(db, packaged)] == [m.version for m in packaged]
    assert await migrate(db, packaged) == []
    assert {"users", "algoedge_schema_migrations"} <= await tables(db)


async def test_should_carry_linked_accounts_over_to_the_bridge_states(db: Database) -> None:
    """0007: an account a pre-bridge build left 'deploying' is 'provisioning' afterwards, with
    its first credentials and no error."""
    packaged = load_migrations()
    bridge = next(m.version for m in packaged if m.name == "bridge")
    await migrate(db, [m for m in packaged if m.version < bridge])
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO users (email, name, password_hash) VALUES ('m@example.com', 'M', 'x') "
            "RETURNING id"
        )
        (user_id,) = await cur.fetchone()
        await cur.execute(
            "INSERT INTO mt_accounts (user_id, login, server, platform, state, encrypted_password) "
            "VALUES (%s, '1', 'S', 'mt5', 'deploying', 'x'), (%s, '2', 'S', 'mt5', 'connected', 'x')",
            (user_id, user_id),
        )
    await migrate(db, packaged)
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT login, state, last_error, credentials_version, state_since IS NOT NULL "
            "FROM mt_accounts ORDER BY login"
        )
        assert await cur.fetchall() == [
            ("1", "provisioning", None, 1, True),
            ("2", "connected", None, 1, True),
        ]


async def test_should_apply_each_migration_once_when_two_migrators_race(
    migrate_settings: MigrateSettings,
) -> None:
    first = await Database.connect(migrate_settings)
    second = await Database.connect(migrate_settings)
    try:
        results = await asyncio.gather(migrate(first, SLOW_FIRST), migrate(second, SLOW_FIRST))
        applied = sorted(m.version for run in results for m in run)
        assert applied == [1, 2]
        async with first.cursor() as cur:
            await cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'things'")
            assert "things_x" in {row[0] for row in await cur.fetchall()}
            await cur.execute("SELECT count(*) FROM algoedge_schema_migrations")
            assert (await cur.fetchone())[0] == 2
    finally:
        await first.close()
        await second.close()


async def test_should_refuse_an_edited_applied_migration(db: Database) -> None:
    await migrate(db, SLOW_FIRST[:1])
    edited = Migration(1, "slow_table", "CREATE TABLE things (id bigint PRIMARY KEY);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(db, [edited])


async def test_should_refuse_a_database_newer_than_the_build(db: Database) -> None:
    await migrate(db, SLOW_FIRST)
    with pytest.raises(MigrationError, match=r"does not know: \[2\]"):
        await migrate(db, SLOW_FIRST[:1])


async def test_should_roll_back_a_failing_migration_entirely(db: Database) -> None:
    broken = [Migration(1, "half", "CREATE TABLE half_done (id int); SELECT no_such_column;")]
    with pytest.raises(Exception, match="no_such_column"):
        await migrate(db, broken)
    assert "half_done" not in await tables(db)
    fixed = [Migration(1, "half", "CREATE TABLE half_done (id int);")]
    assert len(await migrate(db, fixed)) == 1


def test_should_load_a_folder_of_migrations(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int);")
    assert load_migrations(tmp_path)[0].name == "a"
