"""Migration files: naming, ordering and statement splitting, without a database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from algoedge.db.accounts import ConnectionState
from algoedge.db.migrate import Migration, MigrationError, load_migrations


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


class TestLoadMigrations:
    def test_should_load_the_packaged_migrations_in_order(self) -> None:
        migrations = load_migrations()
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
        assert migrations[0].name == "users"

    def test_should_sort_by_version(self, tmp_path: Path) -> None:
        write(tmp_path, {"0002_b.sql": "SELECT 2;", "0001_a.sql": "SELECT 1;", "README": "x"})
        assert [m.name for m in load_migrations(tmp_path)] == ["a", "b"]

    def test_should_refuse_a_gap(self, tmp_path: Path) -> None:
        write(tmp_path, {"0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 3;"})
        with pytest.raises(MigrationError, match="without gaps"):
            load_migrations(tmp_path)

    def test_should_refuse_a_duplicate_version(self, tmp_path: Path) -> None:
        write(tmp_path, {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"})
        with pytest.raises(MigrationError, match="duplicates"):
            load_migrations(tmp_path)

    def test_should_refuse_a_badly_named_file(self, tmp_path: Path) -> None:
        write(tmp_path, {"1_Add-Users.sql": "SELECT 1;"})
        with pytest.raises(MigrationError, match=r"NNNN_lower_snake\.sql"):
            load_migrations(tmp_path)


class TestMigration:
    def test_should_run_in_a_transaction_unless_marked(self) -> None:
        assert Migration(1, "a", "CREATE TABLE t (id int);").transactional
        marked = Migration(
            2, "b", "-- algoedge:no-transaction\nCREATE INDEX CONCURRENTLY i ON t(id);"
        )
        assert not marked.transactional

    def test_should_split_statements_and_drop_comments(self) -> None:
        migration = Migration(
            1,
            "idx",
            "-- algoedge:no-transaction\n-- why: hot query\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS b\n  ON t (y);\n",
        )
        assert migration.statements() == [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS b\n  ON t (y)",
        ]

    def test_should_change_checksum_when_the_sql_changes(self) -> None:
        assert Migration(1, "a", "SELECT 1;").checksum != Migration(1, "a", "SELECT 2;").checksum


def test_should_allow_exactly_the_connection_states_the_api_documents() -> None:
    """The newest CHECK on mt_accounts.state (which the bridge writes; no other table has a
    ``state``) against ConnectionState (the OpenAPI document's enum of ``connection.state``)."""
    checks = [
        check
        for migration in load_migrations()
        for check in re.findall(r"CHECK \(state IN \(([^)]*)\)\)", migration.sql)
    ]
    assert re.findall(r"'([a-z_]+)'", checks[-1]) == list(get_args(ConnectionState))
