"""The "current state" of report runs for bench/jobs_load.py: the daily reports computed inside one API request.

The scalability analysis found reports generated and notifications sent inline with requests.
This module rebuilds that on top of the real API (``algoedge.api.app.create_app``, or with
``--per-query-connections`` the analysis's per-query-connection baseline of
``bench/baseline_app.py``) by adding one route to its route table, ``POST /bench/reports/run``
(``auth="internal"``: bearer ``ALGOEDGE_INTERNAL_TOKEN``; body ``{"kind": "daily",
"period_start": "YYYY-MM-DD", "max_seconds": 30}``). Inside that one request, on the API's event loop, it does per trader what
a worker's batch task does, through the same functions: ``db.jobs.pending_report``,
``db.jobs.closed_trades``, ``reporting.build_report``, ``db.jobs.complete_report``, the socket
events, and for opted-in users ``jobs.mail.report_message`` sent with the blocking
``jobs.mail.send`` right there in the event loop, then ``db.jobs.mark_email_sent``. It stops
after ``max_seconds`` and answers how far it got, so a benchmark phase has a fixed length.

Run with the ``ALGOEDGE_*`` variables of ``algoedge api`` plus ``ALGOEDGE_SMTP_URL`` (and
optionally ``ALGOEDGE_MAIL_FROM``, ``ALGOEDGE_SMTP_TIMEOUT``):
``python -m bench.inline_reports_app [--per-query-connections]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web
from algoedge import logs
from algoedge.api.app import create_app
from algoedge.api.problems import problem
from algoedge.api.routes import Route, add_routes
from algoedge.api.state import DATABASE, REDIS
from algoedge.config import ApiSettings, ConfigError, WorkerSettings, load_settings
from algoedge.db import Database
from algoedge.db import jobs as store
from algoedge.events import publish_event
from algoedge.jobs import mail
from algoedge.reporting import KINDS, PeriodError, ReportKind, build_report, period_bounds
from redis.asyncio import Redis

from bench.baseline_app import create_baseline_app
from bench.hello import raise_file_limit

ROUTE = "/bench/reports/run"
#: Traders read per page, as the worker's fan-out pages them.
PAGE_SIZE = 500

#: The worker settings the inline path needs for mail (SMTP URL, timeout, From:).
MAIL_SETTINGS = web.AppKey("bench_mail_settings", WorkerSettings)


@dataclass(frozen=True, slots=True)
class InlineRun:
    """How far one inline run got before it finished or ran out of time."""

    reports: int
    emails_sent: int
    emails_failed: int
    seconds: float
    finished: bool


async def run_reports_inline(
    db: Database,
    redis: Redis,
    mail_settings: WorkerSettings,
    *,
    kind: ReportKind,
    period_start: date,
    max_seconds: float,
) -> InlineRun:
    """Every trader's report of the period, one after another, with blocking SMTP in between."""
    started = time.monotonic()
    deadline = started + max_seconds
    start, end = period_bounds(kind, period_start)
    label = period_start.isoformat()
    smtp = mail_settings.smtp_url
    reports = sent = failed = 0
    after = 0
    while True:
        page = await store.traders_page(db, after_user_id=after, limit=PAGE_SIZE)
        if not page:
            return InlineRun(reports, sent, failed, time.monotonic() - started, finished=True)
        for user_id in page:
            if time.monotonic() > deadline:
                return InlineRun(reports, sent, failed, time.monotonic() - started, finished=False)
            job = await store.pending_report(
                db, user_id=user_id, kind=kind, period_start=start, period_end=end
            )
            if job is None:
                continue
            trades = await store.closed_trades(db, user_id=user_id, start=start, end=end)
            done = await store.complete_report(db, job, build_report(trades), period_label=label)
            if done is None:
                continue
            reports += 1
            await publish_event(
                redis, user_id, "report.ready", {"id": job.id, "kind": kind, "period_start": label}
            )
            if done.notification is not None:
                await publish_event(redis, user_id, "notification", done.notification)
            if done.email_delivery_id is None:
                continue
            delivery = done.email_delivery_id
            claim = await store.claim_email(
                db, delivery, lease_seconds=mail_settings.smtp_timeout * 4 + 30
            )
            if claim.job is None or claim.job.to_email is None or claim.job.report is None:
                continue
            message = mail.report_message(
                mail_from=mail_settings.mail_from,
                to=mail.Recipient(email=claim.job.to_email, name=claim.job.to_name or ""),
                delivery_key=claim.job.key,
                kind=kind,
                period_label=label,
                summary=claim.job.report["payload"].get("summary", {}),
                now=datetime.now(UTC),
            )
            try:
                if smtp is None:
                    raise mail.MailError("ALGOEDGE_SMTP_URL is not set", permanent=True)
                # Blocking SMTP on the event loop, on purpose: this is the state being measured.
                mail.send(smtp, message, timeout=mail_settings.smtp_timeout)
            except mail.MailError as exc:
                failed += 1
                await store.fail_email(db, delivery, str(exc))
                continue
            await store.mark_email_sent(db, delivery, message_id=str(message["Message-ID"]))
            sent += 1
        after = page[-1]


def _run_request(body: Any) -> tuple[ReportKind, date, float]:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    kind = body.get("kind", "daily")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    period_start = date.fromisoformat(str(body.get("period_start")))
    period_bounds(kind, period_start)  # a weekly period must start on a Monday
    max_seconds = body.get("max_seconds", 3600)
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, int | float):
        raise ValueError("max_seconds must be a number")
    if not 0 < max_seconds <= 86400:
        raise ValueError("max_seconds must be above 0 and at most 86400")
    return kind, period_start, float(max_seconds)


async def run_reports(request: web.Request) -> web.Response:
    try:
        kind, period_start, max_seconds = _run_request(await request.json())
    except (ValueError, PeriodError) as exc:
        return problem(400, detail=str(exc))
    result = await run_reports_inline(
        request.app[DATABASE],
        request.app[REDIS],
        request.app[MAIL_SETTINGS],
        kind=kind,
        period_start=period_start,
        max_seconds=max_seconds,
    )
    return web.json_response(asdict(result))


# The platform's token, never rate limited, and not part of the API's OpenAPI document.
ROUTES = (
    Route(
        "POST",
        ROUTE,
        run_reports,
        summary="Bench only: the daily reports computed and mailed inside this request",
        responses={200: ("How far the run got", {"type": "object"}), 400: ("Bad body", "Problem")},
        auth="internal",
        rate=None,
        documented=False,
    ),
)


def create_inline_app(
    settings: ApiSettings, mail_settings: WorkerSettings, *, per_query_connections: bool
) -> web.Application:
    """The real API (or the per-query-connection baseline) plus the inline report route."""
    app = create_baseline_app(settings) if per_query_connections else create_app(settings)
    app[MAIL_SETTINGS] = mail_settings
    add_routes(app, ROUTES, metrics_port=settings.metrics_port)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inline_reports_app",
        description="The API with reports generated and mailed inside a request (bench only).",
    )
    parser.add_argument(
        "--per-query-connections",
        action="store_true",
        help="on bench/baseline_app.py's current state (a new Postgres connection per query)",
    )
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.per_query_connections:
        # As bench.baseline_app: the real pool opened at start-up is closed at once anyway.
        environ["ALGOEDGE_DB_POOL_MIN"] = "0"
    try:
        settings = load_settings(ApiSettings, environ)
        mail_settings = load_settings(WorkerSettings, environ)
    except ConfigError as exc:
        print(f"bench.inline_reports_app: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    raise_file_limit()
    web.run_app(
        create_inline_app(
            settings, mail_settings, per_query_connections=args.per_query_connections
        ),
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout=20.0,
        access_log=None,
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
