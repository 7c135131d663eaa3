"""Schema migrations: ordered SQL files applied once each, safe to run from several pods at once.

Mutual exclusion must survive pgBouncer's transaction pooling, where a session advisory lock
would stay on a server connection that goes back to the pool. So one pooled connection holds
``pg_advisory_xact_lock`` inside an open transaction (pgBouncer pins the server connection for
its duration) while a second connection applies the migrations; every other migrator blocks on
the same lock and then finds nothing left to do. A file whose first line is
``-- algoedge:no-transaction`` runs statement by statement outside a transaction (for
``CREATE INDEX CONCURRENTLY``); its statements must be idempotent (``IF NOT EXISTS``) because a
crash can leave them half-applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import aiopg

from algoedge.db import Database

log = logging.getLogger(__name__)

# Any constant works as long as every migrator uses the same one; this is "algoedge" in ASCII.
MIGRATION_LOCK_KEY = 0x616C676F65646765
NO_TRANSACTION_MARKER = "-- algoedge:no-transaction"
_CONCURRENT_INDEX = re.compile(
    r"^CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(?P<name>[a-z_][a-z0-9_]*)\s",
    re.IGNORECASE,
)
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The migration set or the database's record of it is inconsistent."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith(NO_TRANSACTION_MARKER)

    def statements(self) -> list[str]:
        """The ';'-terminated statements of a no-transaction file, one per list item."""
        body = "\n".join(
            line for line in self.sql.splitlines() if not line.strip().startswith("--")
        )
        return [s.strip() for s in body.split(";") if s.strip()]


def load_migrations(folder: Traversable | None = None) -> list[Migration]:
    """Read ``NNNN_name.sql`` files in version order; refuse gaps, duplicates and stray files."""
    root = folder if folder is not None else resources.files("algoedge.db").joinpath("sql")
    found: list[Migration] = []
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_lower_snake.sql")
        found.append(
            Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8"))
        )
    found.sort(key=lambda m: m.version)
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        raise MigrationError(
            f"migration versions must run 1..{len(found)} without gaps or duplicates, "
            f"found {[m.version for m in found]}"
        )
    return found


async def migrate(db: Database, migrations: list[Migration]) -> list[Migration]:
    """Apply what is missing, under the cluster-wide lock; return the migrations applied now."""
    applied_now: list[Migration] = []
    async with db.transaction() as lock:
        await _wait_for_lock(lock)
        async with db.cursor() as cur:
            await cur.execute(
                """
                CREATE TABLE IF NOT EXISTS algoedge_schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            await cur.execute("SELECT version, name, checksum FROM algoedge_schema_migrations")
            recorded = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
        known = {m.version for m in migrations}
        unknown = sorted(set(recorded) - known)
        if unknown:
            raise MigrationError(
                f"the database has migrations this build does not know: {unknown}; "
                "run a newer image or restore the missing files"
            )
        for migration in migrations:
            if migration.version in recorded:
                name, checksum = recorded[migration.version]
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{name} changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            await _apply(db, migration)
            applied_now.append(migration)
            log.info("applied migration %04d_%s", migration.version, migration.name)
    return applied_now


async def _wait_for_lock(lock: aiopg.Cursor) -> None:
    """Take the migration lock in ``lock``'s transaction, polling rather than blocking.

    A blocked ``pg_advisory_xact_lock`` call holds a snapshot for as long as it waits, and
    ``CREATE INDEX CONCURRENTLY`` in the lock holder waits for every older snapshot to go: the
    two would wait on each other. Between tries this transaction is idle and holds none.
    """
    delay = 0.05
    while True:
        await lock.execute("SELECT pg_try_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        row = await lock.fetchone()
        if row[0]:
            return
        if delay == 0.05:
            log.info("another migrator holds the lock; waiting for it to finish")
        await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
        delay = min(delay * 2, 1.0)


async def _apply(db: Database, migration: Migration) -> None:
    record = (
        "INSERT INTO algoedge_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.checksum),
    )
    if migration.transactional:
        async with db.transaction() as cur:
            await cur.execute(migration.sql)
            await cur.execute(*record)
        return
    async with db.cursor() as cur:
        for statement in migration.statements():
            index = _CONCURRENT_INDEX.match(statement)
            if index:
                # A crashed CONCURRENTLY build leaves an INVALID index that IF NOT EXISTS would
                # then keep forever; drop it so this run builds it again.
                await cur.execute(
                    "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE c.relname = %s AND NOT i.indisvalid",
                    (index["name"],),
                )
                if await cur.fetchone():
                    log.warning("rebuilding invalid index %s", index["name"])
                    await cur.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index["name"]}"')
            await cur.execute(statement)
        await cur.execute(*record)
