"""What the Celery workers and beat read and write: report generation, e-mail deliveries, report runs, sweeps.

Every effect of a task is keyed so a redelivered task finds its work done: a report's unique
period, a notification's ``key``, an e-mail delivery's ``key`` and its claim, a run's primary key
and each batch's row. The API's own reads of the same tables live in ``db.reports`` and
``db.notifications``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, cast

from algoedge.db import Database, trades
from algoedge.reporting import ClosedTrade, ReportKind


@dataclass(frozen=True, slots=True)
class ReportJob:
    id: int
    user_id: int
    kind: ReportKind
    period_start: datetime
    period_end: datetime
    status: str


@dataclass(frozen=True, slots=True)
class ReportDone:
    """What completing a report created (None: it was already done by an earlier delivery)."""

    notification: dict[str, Any] | None
    email_delivery_id: int | None


_REPORT_COLUMNS = "id, user_id, kind, period_start, period_end, status"


async def report_job(db: Database, report_id: int) -> ReportJob | None:
    """The report to generate; None when it no longer exists (its user was deleted)."""
    async with db.cursor() as cur:
        await cur.execute(f"SELECT {_REPORT_COLUMNS} FROM reports WHERE id = %s", (report_id,))
        row = await cur.fetchone()
    return None if row is None else ReportJob(*row)


async def pending_report(
    db: Database, *, user_id: int, kind: ReportKind, period_start: datetime, period_end: datetime
) -> ReportJob | None:
    """The user's report row for the period, created pending if absent; None if the user is gone."""
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO reports (user_id, kind, period_start, period_end) "
            "SELECT id, %s, %s, %s FROM users WHERE id = %s "
            "ON CONFLICT (user_id, kind, period_start) DO NOTHING",
            (kind, period_start, period_end, user_id),
        )
        await cur.execute(
            f"SELECT {_REPORT_COLUMNS} FROM reports "
            "WHERE user_id = %s AND kind = %s AND period_start = %s",
            (user_id, kind, period_start),
        )
        row = await cur.fetchone()
    return None if row is None else ReportJob(*row)


#: Trades read per statement while gathering a report's input.
TRADES_PAGE = 1000


async def closed_trades(
    db: Database, *, user_id: int, start: datetime, end: datetime
) -> list[ClosedTrade]:
    """The user's trades closed in [start, end), the report's input (the API's CSV query, paged)."""
    found: list[ClosedTrade] = []
    after: tuple[datetime, int] | None = None
    while True:
        page = await trades.closed_trades_page(
            db, user_id=user_id, start=start, end=end, after=after, limit=TRADES_PAGE
        )
        for trade in page:
            assert trade.closed_at is not None  # the query selects closed trades only
            found.append(
                ClosedTrade(
                    id=trade.id,
                    account_id=trade.account_id,
                    symbol=trade.symbol,
                    profit=trade.profit if trade.profit is not None else Decimal(0),
                    closed_at=trade.closed_at,
                )
            )
        if len(page) < TRADES_PAGE:
            return found
        last = page[-1]
        assert last.closed_at is not None
        after = (last.closed_at, last.id)


async def complete_report(
    db: Database, job: ReportJob, payload: dict[str, Any], *, period_label: str
) -> ReportDone | None:
    """Store the figures, the user's notification and (if opted in) the report e-mail, atomically.

    None when the report was already ready: a redelivered task then creates nothing twice.
    """
    async with db.transaction() as cur:
        await cur.execute(
            "UPDATE reports SET status = 'ready', payload = %s, ready_at = now(), error = NULL, "
            "attempts = attempts + 1 WHERE id = %s AND status <> 'ready' "
            "RETURNING (SELECT email_reports FROM users WHERE id = reports.user_id)",
            (json.dumps(payload), job.id),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        wants_email = bool(row[0])
        body = {
            "report_id": job.id,
            "kind": job.kind,
            "period_start": period_label,
        }
        await cur.execute(
            "INSERT INTO notifications (user_id, kind, key, body) VALUES (%s, 'report.ready', %s, %s) "
            "ON CONFLICT (user_id, key) DO NOTHING RETURNING id, kind, body, read_at, created_at",
            (job.user_id, f"report:{job.id}", json.dumps(body)),
        )
        created = await cur.fetchone()
        notification = (
            None
            if created is None
            else {
                "id": created[0],
                "kind": created[1],
                "body": created[2],
                "read_at": None,
                "created_at": created[4].isoformat(),
            }
        )
        delivery_id = None
        if wants_email:
            await cur.execute(
                "INSERT INTO email_deliveries (key, user_id, kind, report_id) "
                "VALUES (%s, %s, 'report', %s) ON CONFLICT (key) DO NOTHING RETURNING id",
                (f"report:{job.id}", job.user_id, job.id),
            )
            inserted = await cur.fetchone()
            delivery_id = None if inserted is None else int(inserted[0])
    return ReportDone(notification=notification, email_delivery_id=delivery_id)


async def fail_report(db: Database, report_id: int, reason: str) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE reports SET status = 'failed', error = %s, attempts = attempts + 1 "
            "WHERE id = %s AND status = 'pending'",
            (reason[:1000], report_id),
        )


# --- scheduled runs -------------------------------------------------------------------------


async def traders_page(db: Database, *, after_user_id: int, limit: int) -> list[int]:
    """Ids of users with at least one linked account, ascending, after ``after_user_id`` (the
    replica: a run covers a period that ended before it was scheduled)."""
    rows = await db.read_replica(
        "SELECT u.id FROM users u WHERE u.id > %s "
        "AND EXISTS (SELECT 1 FROM mt_accounts a WHERE a.user_id = u.id) "
        "ORDER BY u.id LIMIT %s",
        (after_user_id, limit),
    )
    return [int(r[0]) for r in rows]


async def last_scheduled_period(db: Database, kind: ReportKind) -> date | None:
    async with db.cursor() as cur:
        await cur.execute("SELECT max(period_start) FROM report_runs WHERE kind = %s", (kind,))
        row = await cur.fetchone()
    return None if row is None or row[0] is None else row[0].date()


async def claim_run(
    db: Database, *, kind: ReportKind, period_start: datetime, scheduled_at: datetime
) -> bool:
    """True for exactly one caller per (kind, period): the beat that should enqueue it."""
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO report_runs (kind, period_start, scheduled_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (kind, period_start) DO NOTHING RETURNING 1",
            (kind, period_start, scheduled_at),
        )
        return await cur.fetchone() is not None


async def mark_run_enqueued(db: Database, *, kind: ReportKind, period_start: datetime) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE report_runs SET enqueued_at = now() WHERE kind = %s AND period_start = %s",
            (kind, period_start),
        )


async def reclaim_unenqueued_runs(
    db: Database, *, older_than: float
) -> list[tuple[ReportKind, datetime]]:
    """Runs claimed but never put on the queue (the beat died or Redis was down), claimed again."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE report_runs SET claimed_at = now() WHERE enqueued_at IS NULL "
            "AND claimed_at < now() - make_interval(secs => %s) RETURNING kind, period_start",
            (older_than,),
        )
        return [(cast(ReportKind, r[0]), r[1]) for r in await cur.fetchall()]


async def set_run_size(
    db: Database, *, kind: ReportKind, period_start: datetime, batches: int, users: int
) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE report_runs SET batches_total = %s, users_total = %s, "
            "completed_at = CASE WHEN completed_at IS NULL AND batches_done >= %s THEN now() "
            "ELSE completed_at END WHERE kind = %s AND period_start = %s",
            (batches, users, batches, kind, period_start),
        )


async def finish_batch(
    db: Database, *, kind: ReportKind, period_start: datetime, first_user_id: int
) -> None:
    """Count a batch once; the run is complete when every batch counted."""
    async with db.transaction() as cur:
        await cur.execute(
            "INSERT INTO report_run_batches (kind, period_start, first_user_id) "
            "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (kind, period_start, first_user_id),
        )
        if await cur.fetchone() is None:
            return
        await cur.execute(
            "UPDATE report_runs SET batches_done = batches_done + 1, completed_at = CASE "
            "WHEN completed_at IS NULL AND batches_total IS NOT NULL "
            "AND batches_done + 1 >= batches_total THEN now() ELSE completed_at END "
            "WHERE kind = %s AND period_start = %s",
            (kind, period_start),
        )


async def last_completed_run(db: Database, kind: ReportKind) -> datetime | None:
    """The scheduled time of the newest completed run of ``kind``."""
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT max(scheduled_at) FROM report_runs WHERE kind = %s AND completed_at IS NOT NULL",
            (kind,),
        )
        row = await cur.fetchone()
    return None if row is None else row[0]


# --- e-mail deliveries ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailJob:
    id: int
    key: str
    kind: Literal["welcome", "report", "registration_attempt"]
    attempts: int
    created_at: datetime
    #: None when the user was deleted after the delivery was recorded.
    to_email: str | None
    to_name: str | None
    report: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of trying to claim a delivery before sending it."""

    state: Literal["claimed", "done", "busy", "missing"]
    job: EmailJob | None = None
    #: With ``busy``: seconds until another sender's claim expires.
    wait_seconds: float = 0.0


async def claim_email(db: Database, delivery_id: int, *, lease_seconds: float) -> Claim:
    """Take the delivery for ``lease_seconds``: only one sender at a time, none after it was sent."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE email_deliveries SET status = 'sending', attempts = attempts + 1, "
            "claimed_until = now() + make_interval(secs => %s) "
            "WHERE id = %s AND (status = 'pending' OR (status = 'sending' AND claimed_until < now())) "
            "RETURNING id, key, kind, attempts, created_at, user_id, report_id",
            (lease_seconds, delivery_id),
        )
        row = await cur.fetchone()
        if row is None:
            await cur.execute(
                "SELECT status, GREATEST(0, EXTRACT(EPOCH FROM claimed_until - now())) "
                "FROM email_deliveries WHERE id = %s",
                (delivery_id,),
            )
            state = await cur.fetchone()
            if state is None:
                return Claim("missing")
            if state[0] == "sending":
                return Claim("busy", wait_seconds=float(state[1] or 0))
            return Claim("done")
        to_email = to_name = None
        if row[5] is not None:
            await cur.execute("SELECT email, name FROM users WHERE id = %s", (row[5],))
            user = await cur.fetchone()
            if user is not None:
                to_email, to_name = user
        report = None
        if row[6] is not None:
            await cur.execute(
                "SELECT id, kind, period_start, period_end, payload FROM reports WHERE id = %s",
                (row[6],),
            )
            found = await cur.fetchone()
            if found is not None:
                report = dict(
                    zip(("id", "kind", "period_start", "period_end", "payload"), found, strict=True)
                )
    job = EmailJob(
        id=row[0],
        key=row[1],
        kind=row[2],
        attempts=row[3],
        created_at=row[4],
        to_email=to_email,
        to_name=to_name,
        report=report,
    )
    return Claim("claimed", job=job)


async def mark_email_sent(db: Database, delivery_id: int, *, message_id: str) -> None:
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE email_deliveries SET status = 'sent', sent_at = now(), message_id = %s, "
            "claimed_until = NULL, error = NULL WHERE id = %s",
            (message_id, delivery_id),
        )


async def fail_email(db: Database, delivery_id: int, reason: str) -> None:
    """A permanent failure: never retried."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE email_deliveries SET status = 'failed', error = %s, claimed_until = NULL "
            "WHERE id = %s AND status <> 'sent'",
            (reason[:1000], delivery_id),
        )


async def release_email(db: Database, delivery_id: int, reason: str) -> None:
    """A transient failure: back to pending for the retry (which claims it again)."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE email_deliveries SET status = 'pending', error = %s, claimed_until = NULL "
            "WHERE id = %s AND status = 'sending'",
            (reason[:1000], delivery_id),
        )


# --- the sweeper ----------------------------------------------------------------------------


async def stale_work(db: Database, *, older_than: float, limit: int) -> tuple[list[int], list[int]]:
    """Pending reports and open deliveries not (re)enqueued for ``older_than`` seconds, claimed.

    Marking them enqueued in the same statement means two sweepers never both take one.
    """
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE reports SET enqueued_at = now() WHERE id IN (SELECT id FROM reports "
            "WHERE status = 'pending' AND created_at < now() - make_interval(secs => %s) "
            "AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => %s)) "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
            (min(older_than, 30.0), older_than, limit),
        )
        reports = [int(r[0]) for r in await cur.fetchall()]
        await cur.execute(
            "UPDATE email_deliveries SET enqueued_at = now() WHERE id IN (SELECT id FROM "
            "email_deliveries WHERE (status = 'pending' OR (status = 'sending' AND claimed_until < now())) "
            "AND created_at < now() - make_interval(secs => %s) "
            "AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => %s)) "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
            (min(older_than, 30.0), older_than, limit),
        )
        deliveries = [int(r[0]) for r in await cur.fetchall()]
    return reports, deliveries
