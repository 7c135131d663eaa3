"""Users' trading reports: one row per user, kind and period, pending until a worker fills it in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from algoedge.db import Database
from algoedge.db.errors import NotFound

#: What the table allows; the API creates daily and weekly reports only (reporting.ReportKind).
StoredKind = Literal["daily", "weekly", "monthly"]
ReportStatus = Literal["pending", "ready", "failed"]


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class ReportSummary:
    """A report as listed: everything but the figures."""

    id: int
    kind: StoredKind
    period_start: datetime
    period_end: datetime
    status: ReportStatus
    created_at: datetime
    ready_at: datetime | None
    error: str | None


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class Report(ReportSummary):
    #: The figures (reporting.build_report) once ready; None while pending or after a failure.
    payload: dict[str, Any] | None


_SUMMARY = "id, kind, period_start, period_end, status, created_at, ready_at, error"
_REPORT = f"{_SUMMARY}, payload"


async def request_report(
    db: Database, *, user_id: int, kind: str, period_start: datetime, period_end: datetime
) -> tuple[Report, bool]:
    """The user's report of this period, created pending unless it exists; (report, created now).

    Two statements, each seeing what committed before it: a concurrent request for the same
    period either inserts first (this one then reads its row) or finds this one's.
    """
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO reports (user_id, kind, period_start, period_end) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (user_id, kind, period_start) DO NOTHING RETURNING {_REPORT}",
            (user_id, kind, period_start, period_end),
        )
        created = await cur.fetchone()
        if created is not None:
            return Report(*created), True
        await cur.execute(
            f"SELECT {_REPORT} FROM reports WHERE user_id = %s AND kind = %s AND period_start = %s",
            (user_id, kind, period_start),
        )
        existing = await cur.fetchone()
    if existing is None:  # the user was deleted in between
        raise NotFound(f"report {kind} {period_start.isoformat()}")
    return Report(*existing), False


async def mark_report_enqueued(db: Database, report_id: int) -> None:
    """Record that a generate task of a pending report is on the queue (the sweeper reads it)."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE reports SET enqueued_at = now() WHERE id = %s AND status = 'pending'",
            (report_id,),
        )


async def get_report(db: Database, *, user_id: int, report_id: int) -> Report:
    """One of the user's reports; someone else's is NotFound, exactly like a missing one."""
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT {_REPORT} FROM reports WHERE id = %s AND user_id = %s", (report_id, user_id)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"report {report_id}")
    return Report(*row)


async def list_reports(
    db: Database,
    *,
    user_id: int,
    kind: str | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[ReportSummary]:
    """One page, newest first; ``before`` is the (created_at, id) of the previous page's last."""
    where = ["user_id = %s"]
    params: list[Any] = [user_id]
    if kind is not None:
        where.append("kind = %s")
        params.append(kind)
    if before is not None:
        where.append("(created_at, id) < (%s, %s)")
        params.extend(before)
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT {_SUMMARY} FROM reports WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            [*params, limit],
        )
        return [ReportSummary(*row) for row in await cur.fetchall()]
