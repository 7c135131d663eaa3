"""Read routing without servers: the lag clock, the read-only guard, and which queries may use the
replica (the code and docs/architecture.md name the same ones)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from algoedge.db.replica import LagClock, check_read_only, parse_lsn

ROOT = Path(__file__).resolve().parents[2]
DATA_LAYER = ROOT / "app" / "algoedge" / "db"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


class TestLagClock:
    def test_should_stay_near_zero_while_the_primary_is_idle(self) -> None:
        clock = LagClock()
        for second in range(600):
            clock.note_primary(0x3000000, at=float(second))
            assert clock.lag(0x3000000, now=second + 0.01) == pytest.approx(0.01)

    def test_should_count_from_the_last_time_the_primary_was_where_the_replica_is(self) -> None:
        clock = LagClock()
        clock.note_primary(100, at=0.0)
        clock.note_primary(100, at=1.0)  # the last time the primary was still at 100
        clock.note_primary(200, at=2.0)  # a write
        clock.note_primary(300, at=3.0)
        assert clock.lag(100, now=3.0) == 2.0
        assert clock.lag(250, now=4.0) == 2.0  # reached 200 (last seen at 2), not 300
        assert clock.lag(300, now=4.0) == 1.0
        clock.note_primary(300, at=5.0)
        assert clock.lag(300, now=5.0) == 0.0

    def test_should_be_at_least_as_old_as_the_oldest_position_not_reached(self) -> None:
        clock = LagClock()
        clock.note_primary(200, at=10.0)
        clock.note_primary(300, at=11.0)
        assert clock.lag(100, now=30.0) == 20.0

    def test_should_know_nothing_before_the_first_note(self) -> None:
        assert LagClock().lag(100, now=1.0) is None

    def test_should_remember_a_bounded_number_of_positions(self) -> None:
        clock = LagClock(max_notes=3)
        for second, lsn in enumerate((100, 200, 300, 400, 500)):
            clock.note_primary(lsn, at=float(second))
        # 100 and 200 are forgotten: behind them all, the replica is at least 2 s behind.
        assert clock.lag(50, now=4.0) == 2.0


def test_should_read_wal_positions_as_postgres_prints_them() -> None:
    assert parse_lsn("0/3000028") == 0x3000028
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select id FROM trades WHERE user_id = %s",
        "SELECT u.id FROM users u WHERE EXISTS (SELECT 1 FROM mt_accounts a WHERE a.user_id = u.id)",
    ],
)
def test_should_let_plain_selects_through(sql: str) -> None:
    check_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO trades DEFAULT VALUES",
        "UPDATE users SET name = 'x'",
        "DELETE FROM trades",
        "WITH gone AS (DELETE FROM trades RETURNING id) SELECT count(*) FROM gone",
        "SELECT id FROM mt_accounts WHERE id = 1 FOR UPDATE",
        "SELECT id FROM mt_accounts FOR NO KEY UPDATE SKIP LOCKED",
        "SELECT id FROM mt_accounts for share",
    ],
)
def test_should_refuse_writes_and_row_locks(sql: str) -> None:
    with pytest.raises(ValueError, match="plain SELECT"):
        check_read_only(sql)


def replica_queries_in_code() -> set[str]:
    """``module.function`` of every data-layer function that reads through ``read_replica``."""
    found = set()
    for path in sorted(DATA_LAYER.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            calls = [
                call
                for call in ast.walk(node)
                if isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "read_replica"
            ]
            if calls:
                found.add(f"{path.stem}.{node.name}")
    return found


def replica_queries_in_docs() -> set[str]:
    """The first column of the table under "Read replicas" in docs/architecture.md."""
    text = ARCHITECTURE.read_text()
    section = text.split("\n## Read replicas\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", section, flags=re.MULTILINE))


def test_should_document_exactly_the_queries_that_read_the_replica() -> None:
    """Which reads may be stale is a contract (docs/architecture.md): a query moved to the
    replica, or back to the primary, changes the table in the same commit."""
    in_code = replica_queries_in_code()
    assert in_code, "no data-layer function reads through read_replica"
    assert in_code == replica_queries_in_docs()


@pytest.mark.parametrize(
    "query",
    [
        # What a user writes through the API and reads back at once (the Location of a new
        # report, an account just linked, a notification just marked read, a profile, a session).
        "accounts.get_account",
        "accounts.list_accounts",
        "reports.get_report",
        "reports.list_reports",
        "notifications.list_notifications",
        "users.get_user",
        "users.get_login",
        "users.session_active",
        # What the worker just claimed or the API just recorded before enqueueing.
        "jobs.report_job",
        # The bridge acts on the accounts it reads and fences its writes with their version.
        "bridge.linked_accounts",
    ],
)
def test_should_read_back_what_was_just_written_from_the_primary(query: str) -> None:
    assert query not in replica_queries_in_code()
