"""Routes: the user's reports (requested here, computed by a worker) and their trades as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from aiohttp import web
from pydantic import Field

from algoedge.api.io import (
    Invalid,
    IsoDate,
    PageQuery,
    StrictModel,
    decode_time_cursor,
    page,
    path_id,
    read_json,
    read_query,
    render,
    time_cursor,
)
from algoedge.api.routes import Route
from algoedge.api.state import DATABASE, JOBS, USER
from algoedge.db import reports, trades
from algoedge.reporting import PeriodError, ReportKind, check_requestable, period_bounds

#: Closed trades read per query while streaming a CSV: one page is all a download holds in memory.
CSV_PAGE = 1000

CSV_COLUMNS = (
    "trade_id",
    "account_id",
    "symbol",
    "side",
    "volume",
    "open_price",
    "close_price",
    "profit",
    "opened_at",
    "closed_at",
)


class ReportsQuery(PageQuery):
    kind: ReportKind | None = None


class ReportRequest(StrictModel):
    kind: ReportKind
    period_start: IsoDate = Field(
        description="The period's first day (UTC): a Monday for a weekly period; not in the "
        "future and not more than a year ago"
    )


async def request_report(request: web.Request) -> web.Response:
    body = await read_json(request, ReportRequest)
    try:
        check_requestable(body.kind, body.period_start, today=datetime.now(UTC).date())
    except PeriodError as exc:
        raise Invalid([{"field": "period_start", "message": str(exc)}]) from None
    start, end = period_bounds(body.kind, body.period_start)
    db = request.app[DATABASE]
    report, created = await reports.request_report(
        db, user_id=request[USER].id, kind=body.kind, period_start=start, period_end=end
    )
    # A ready or failed report is answered as it is; a pending one is queued again in case its
    # task was lost (a redelivered task finds the report done and does nothing).
    if (created or report.status == "pending") and await request.app[JOBS].generate_report(
        report.id
    ):
        await reports.mark_report_enqueued(db, report.id)
    return render(report, status=202, headers={"Location": f"/api/v1/reports/{report.id}"})


async def list_(request: web.Request) -> web.Response:
    query = read_query(request, ReportsQuery)
    rows = await reports.list_reports(
        request.app[DATABASE],
        user_id=request[USER].id,
        kind=query.kind,
        before=decode_time_cursor(query.cursor),
        limit=query.limit + 1,
    )
    return render(page(rows, limit=query.limit, cursor_of=time_cursor))


async def get(request: web.Request) -> web.Response:
    return render(
        await reports.get_report(
            request.app[DATABASE], user_id=request[USER].id, report_id=path_id(request, "report_id")
        )
    )


def _plain(value: Decimal | None) -> str:
    # Fixed-point text: str() would give "0E-8" for a zero price stored with eight places.
    return "" if value is None else format(value, "f")


def _rfc3339(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def _csv_rows(rows: Iterable[trades.Trade], *, header: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(
        (
            t.id,
            t.account_id,
            t.symbol,
            t.side,
            _plain(t.volume),
            _plain(t.open_price),
            _plain(t.close_price),
            _plain(t.profit),
            _rfc3339(t.opened_at),
            _rfc3339(t.closed_at),
        )
        for t in rows
    )
    return buffer.getvalue().encode()


async def trades_csv(request: web.Request) -> web.StreamResponse:
    """The period's closed trades, streamed page by page whatever the report's status."""
    db, user_id = request.app[DATABASE], request[USER].id
    report = await reports.get_report(db, user_id=user_id, report_id=path_id(request, "report_id"))

    async def next_page(after: tuple[datetime, int] | None) -> list[trades.Trade]:
        return await trades.closed_trades_page(
            db,
            user_id=user_id,
            start=report.period_start,
            end=report.period_end,
            after=after,
            limit=CSV_PAGE,
        )

    # The first page is read before anything is sent, so a failing database is still a 500
    # problem; a failure after that breaks the transfer (see problems.problem_middleware).
    rows = await next_page(None)
    day = report.period_start.astimezone(UTC).date().isoformat()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": (
                f'attachment; filename="report-{report.id}-{report.kind}-{day}.csv"'
            ),
        }
    )
    await response.prepare(request)
    await response.write(_csv_rows(rows, header=True))
    while len(rows) == CSV_PAGE:
        last = rows[-1]
        assert last.closed_at is not None  # the query returns closed trades only
        rows = await next_page((last.closed_at, last.id))
        await response.write(_csv_rows(rows))
    await response.write_eof()
    return response


ROUTES = (
    Route(
        "POST",
        "/api/v1/reports",
        request_report,
        summary="Request the report of a period (idempotent: the same period answers the same "
        "report, computed once)",
        responses={202: ("Accepted; pending until a worker computes it", "Report")},
        body=ReportRequest,
        location=True,
    ),
    Route(
        "GET",
        "/api/v1/reports",
        list_,
        summary="My reports, newest first",
        responses={200: ("OK", "ReportPage")},
        query=ReportsQuery,
    ),
    Route(
        "GET",
        "/api/v1/reports/{report_id}",
        get,
        summary="One of my reports with its figures (null until ready)",
        responses={200: ("OK", "Report")},
    ),
    Route(
        "GET",
        "/api/v1/reports/{report_id}/csv",
        trades_csv,
        summary="The trades closed in the report's period, as CSV (any report status)",
        responses={200: ("OK", {"type": "string"})},
        media="text/csv",
    ),
)
