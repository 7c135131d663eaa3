"""Reports: requesting a period (queued once per request, idempotent per period), listing, reading
one, and its closed trades as streamed CSV. No worker runs here: tests look at rows and the queue."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import psycopg2
import pytest
from algoedge.api import reports as reports_api
from algoedge.config import ApiSettings
from algoedge.db import Database, accounts, trades
from redis.asyncio import Redis

from tests.integration.conftest import ApiClient

REPORTS = "/api/v1/reports"
SUMMARY_FIELDS = {
    "id",
    "kind",
    "period_start",
    "period_end",
    "status",
    "created_at",
    "ready_at",
    "error",
}


@pytest.fixture
async def app_db(relaxed_settings: ApiSettings) -> AsyncIterator[Database]:
    database = await Database.connect(relaxed_settings)
    yield database
    await database.close()


QueueLength = Callable[[str], Awaitable[int]]


@pytest.fixture
async def queued(relaxed_settings: ApiSettings) -> AsyncIterator[QueueLength]:
    """How many tasks wait in a Celery queue (the Redis list of that name); no worker runs here."""
    redis = Redis.from_url(relaxed_settings.redis_url)

    async def length(queue: str) -> int:
        return int(await redis.llen(queue))

    yield length
    await redis.aclose()


def today() -> date:
    return datetime.now(UTC).date()


def last_monday() -> date:
    return today() - timedelta(days=today().weekday())


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def request(
    api: ApiClient, token: str, kind: str, day: date
) -> tuple[int, Any, dict[str, str]]:
    status, body, response = await api.call(
        "POST", REPORTS, token=token, json={"kind": kind, "period_start": day.isoformat()}
    )
    return status, body, dict(response.headers)


async def report_row(db: Database, report_id: int) -> dict[str, Any]:
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT user_id, kind, period_start, period_end, status, enqueued_at "
            "FROM reports WHERE id = %s",
            (report_id,),
        )
        row = await cur.fetchone()
    names = ("user_id", "kind", "period_start", "period_end", "status", "enqueued_at")
    return dict(zip(names, row, strict=True))


async def insert_report(
    db: Database,
    *,
    user_id: int,
    kind: str,
    day: date,
    created_at: datetime,
    status: str = "pending",
    payload: dict[str, Any] | None = None,
) -> int:
    length = timedelta(days=7 if kind == "weekly" else 1)
    async with db.cursor() as cur:
        await cur.execute(
            "INSERT INTO reports (user_id, kind, period_start, period_end, status, payload, "
            "created_at, ready_at) VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "CASE WHEN %s = 'ready' THEN now() END) RETURNING id",
            (
                user_id,
                kind,
                midnight(day),
                midnight(day) + length,
                status,
                None if payload is None else json.dumps(payload),
                created_at,
                status,
            ),
        )
        return int((await cur.fetchone())[0])


class TestRequest:
    async def test_should_create_a_pending_report_and_queue_it_on_every_request_while_pending(
        self, api: ApiClient, app_db: Database, queued: QueueLength
    ) -> None:
        user_id, token = await api.signed_up()
        yesterday = today() - timedelta(days=1)
        status, body, headers = await request(api, token, "daily", yesterday)
        assert status == 202, body
        assert headers["Location"] == f"{REPORTS}/{body['id']}"
        assert set(body) == SUMMARY_FIELDS | {"payload"}
        assert (body["kind"], body["status"], body["payload"], body["ready_at"]) == (
            "daily",
            "pending",
            None,
            None,
        )
        assert datetime.fromisoformat(body["period_start"]) == midnight(yesterday)
        assert datetime.fromisoformat(body["period_end"]) == midnight(today())
        row = await report_row(app_db, body["id"])
        assert (row["user_id"], row["status"]) == (user_id, "pending")
        assert row["enqueued_at"] is not None
        assert await queued("reports") == 1

        # The same period again: the same report, and (still pending, no worker here) queued again.
        again, second, _ = await request(api, token, "daily", yesterday)
        assert (again, second["id"]) == (202, body["id"])
        assert await queued("reports") == 2
        async with app_db.cursor() as cur:
            await cur.execute("SELECT count(*) FROM reports WHERE user_id = %s", (user_id,))
            assert (await cur.fetchone())[0] == 1

    async def test_should_answer_a_ready_report_as_it_is_without_queueing_it(
        self, api: ApiClient, app_db: Database, queued: QueueLength
    ) -> None:
        _, token = await api.signed_up()
        day = today() - timedelta(days=3)
        report_id = (await request(api, token, "daily", day))[1]["id"]
        async with app_db.cursor() as cur:
            await cur.execute(
                "UPDATE reports SET status = 'ready', ready_at = now(), payload = %s WHERE id = %s",
                (json.dumps({"summary": {"trades": 4}}), report_id),
            )
        before = await queued("reports")
        status, body, _ = await request(api, token, "daily", day)
        assert status == 202
        assert (body["id"], body["status"], body["payload"]) == (
            report_id,
            "ready",
            {"summary": {"trades": 4}},
        )
        assert body["ready_at"] is not None
        assert await queued("reports") == before

    async def test_should_cover_a_week_from_monday_and_keep_kinds_apart(
        self, api: ApiClient, queued: QueueLength
    ) -> None:
        _, token = await api.signed_up()
        status, weekly, _ = await request(api, token, "weekly", last_monday())
        assert status == 202, weekly
        assert datetime.fromisoformat(weekly["period_start"]) == midnight(last_monday())
        assert datetime.fromisoformat(weekly["period_end"]) == midnight(last_monday()) + timedelta(
            days=7
        )
        daily = (await request(api, token, "daily", last_monday()))[1]
        assert daily["id"] != weekly["id"]
        # Another user asking for the same period gets a report of their own.
        _, other = await api.signed_up()
        assert (await request(api, other, "weekly", last_monday()))[1]["id"] != weekly["id"]
        assert await queued("reports") == 3

    @pytest.mark.parametrize(
        ("body", "field", "message"),
        [
            (lambda: {"kind": "monthly", "period_start": str(today())}, "kind", "daily"),
            (lambda: {"kind": "daily", "period_start": "yesterday"}, "period_start", "date"),
            (lambda: {"kind": "daily", "period_start": "2026-02-30"}, "period_start", "calendar"),
            (lambda: {"kind": "daily", "period_start": 20260105}, "period_start", "date"),
            (lambda: {"kind": "daily", "period_start": f"{today()}T00:00:00Z"}, "period_start", ""),
            (
                lambda: {"kind": "daily", "period_start": str(today() + timedelta(days=1))},
                "period_start",
                "future",
            ),
            (
                lambda: {"kind": "daily", "period_start": str(today() - timedelta(days=400))},
                "period_start",
                "more than a year ago",
            ),
            (
                lambda: {"kind": "weekly", "period_start": str(last_monday() - timedelta(days=6))},
                "period_start",
                "Monday",
            ),
            (
                lambda: {"kind": "daily", "period_start": str(today()), "email": True},
                "email",
                "",
            ),
            (lambda: {"period_start": str(today())}, "kind", ""),
        ],
        ids=[
            "unknown kind",
            "not a date",
            "no such day",
            "a number",
            "a date-time",
            "tomorrow",
            "400 days ago",
            "weekly on a tuesday",
            "extra field",
            "no kind",
        ],
    )
    async def test_should_refuse_a_period_it_cannot_report_naming_the_field(
        self,
        api: ApiClient,
        app_db: Database,
        queued: QueueLength,
        body: Callable[[], dict[str, Any]],
        field: str,
        message: str,
    ) -> None:
        user_id, token = await api.signed_up()
        status, problem, response = await api.call("POST", REPORTS, token=token, json=body())
        assert status == 422, problem
        assert response.content_type == "application/problem+json"
        errors = {e["field"]: e["message"] for e in problem["errors"]}
        assert field in errors, errors
        assert message in errors[field]
        async with app_db.cursor() as cur:
            await cur.execute("SELECT count(*) FROM reports WHERE user_id = %s", (user_id,))
            assert (await cur.fetchone())[0] == 0
        assert await queued("reports") == 0

    async def test_should_need_a_token(self, api: ApiClient) -> None:
        body = {"kind": "daily", "period_start": str(today())}
        assert (await api.call("POST", REPORTS, json=body))[0] == 401
        assert (await api.call("GET", REPORTS))[0] == 401


class TestRead:
    async def test_should_page_my_reports_newest_first_without_payloads(
        self, api: ApiClient, app_db: Database
    ) -> None:
        user_id, token = await api.signed_up()
        other_id, _ = await api.signed_up()
        base = datetime(2026, 3, 1, tzinfo=UTC)
        made = []
        for n in range(7):
            kind = "weekly" if n % 3 == 0 else "daily"
            # Two reports share a created_at: the id breaks the tie.
            created_at = base + timedelta(hours=min(n, 5))
            made.append(
                (
                    kind,
                    await insert_report(
                        app_db,
                        user_id=user_id,
                        kind=kind,
                        day=date(2026, 2, 2) + timedelta(days=7 * n),
                        created_at=created_at,
                        status="ready",
                        payload={"summary": {"trades": n}},
                    ),
                )
            )
        await insert_report(
            app_db, user_id=other_id, kind="daily", day=date(2026, 2, 2), created_at=base
        )
        newest_first = [report_id for _, report_id in reversed(made)]

        async def every(query: str) -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            cursor = None
            while True:
                suffix = f"&cursor={cursor}" if cursor else ""
                status, body, _ = await api.call("GET", f"{REPORTS}?{query}{suffix}", token=token)
                assert status == 200, body
                seen += body["items"]
                cursor = body["next_cursor"]
                if cursor is None:
                    return seen

        listed = await every("limit=2")
        assert [r["id"] for r in listed] == newest_first
        assert all(set(r) == SUMMARY_FIELDS for r in listed)
        weekly = await every("limit=1&kind=weekly")
        assert [r["id"] for r in weekly] == [i for k, i in reversed(made) if k == "weekly"]

    async def test_should_show_one_report_with_its_figures_to_its_owner_only(
        self, api: ApiClient, app_db: Database
    ) -> None:
        owner_id, owner = await api.signed_up()
        _, intruder = await api.signed_up()
        report_id = await insert_report(
            app_db,
            user_id=owner_id,
            kind="daily",
            day=date(2026, 5, 4),
            created_at=datetime.now(UTC),
            status="ready",
            payload={"summary": {"net_profit": "12.50"}},
        )
        status, body, _ = await api.call("GET", f"{REPORTS}/{report_id}", token=owner)
        assert status == 200
        assert body["payload"] == {"summary": {"net_profit": "12.50"}}
        assert body["status"] == "ready"
        for path in (f"{REPORTS}/{report_id}", f"{REPORTS}/{report_id}/csv"):
            status, problem, _ = await api.call("GET", path, token=intruder)
            assert status == 404, path
            assert problem["detail"] == "No such resource."
        for missing in ("987654321", "abc", "-1", "²", "1" * 19):
            assert (await api.call("GET", f"{REPORTS}/{missing}", token=owner))[0] == 404
            assert (await api.call("GET", f"{REPORTS}/{missing}/csv", token=owner))[0] == 404

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("kind=monthly", "kind"),
            ("cursor=not-a-cursor", "cursor"),
            ("limit=0", "limit"),
            ("kind=daily&kind=weekly", "kind"),
            ("status=ready", "status"),
        ],
    )
    async def test_should_refuse_a_bad_listing_query(
        self, api: ApiClient, query: str, field: str
    ) -> None:
        _, token = await api.signed_up()
        status, problem, _ = await api.call("GET", f"{REPORTS}?{query}", token=token)
        assert status == 422
        assert field in {e["field"] for e in problem["errors"]}


async def download(api: ApiClient, path: str, token: str) -> tuple[int, str, Any]:
    async with api.session.get(
        api.base_url + path, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.text(), response.headers


async def an_account(db: Database, user_id: int) -> int:
    account = await accounts.link_account(
        db, user_id=user_id, login="5001", server="S", platform="mt5", encrypted_password=b"x"
    )
    return account.id


class TestCsv:
    async def test_should_stream_the_periods_closed_trades_in_closing_order(
        self, api: ApiClient, app_db: Database
    ) -> None:
        user_id, token = await api.signed_up()
        other_id, _ = await api.signed_up()
        account_id = await an_account(app_db, user_id)
        other_account = await an_account(app_db, other_id)
        day = today() - timedelta(days=2)
        start, end = midnight(day), midnight(day) + timedelta(days=1)

        async def trade(
            closed_at: datetime | None,
            *,
            account: int = account_id,
            profit: str = "12.50",
            close_price: str = "1.09750",
        ) -> int:
            recorded = await trades.record_trade(
                app_db,
                account_id=account,
                symbol="EURUSD",
                side="buy",
                volume=Decimal("0.10"),
                open_price=Decimal("1.08500"),
                opened_at=start - timedelta(hours=2),
                close_price=None if closed_at is None else Decimal(close_price),
                profit=None if closed_at is None else Decimal(profit),
                closed_at=closed_at,
            )
            return recorded.id

        later = start + timedelta(hours=5)
        on_end = await trade(end)  # [start, end): the end belongs to the next period
        second = await trade(later, profit="0", close_price="0")
        on_start = await trade(start, profit="-3.20")
        await trade(start - timedelta(microseconds=1))
        await trade(None)  # still open
        await trade(later, account=other_account)
        tied = await trade(later)  # same closing time as `second`: the id orders them
        assert on_end

        status, body, _ = await request(api, token, "daily", day)
        assert status == 202, body
        status, text, headers = await download(api, f"{REPORTS}/{body['id']}/csv", token)
        assert status == 200, text
        assert headers["Content-Type"] == "text/csv; charset=utf-8"
        assert headers["Content-Disposition"] == (
            f'attachment; filename="report-{body["id"]}-daily-{day.isoformat()}.csv"'
        )
        # The middlewares' headers reach a streamed response too.
        assert headers["X-Request-ID"]
        assert "RateLimit-Remaining" in headers
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert text.endswith("\r\n")
        assert rows[0] == [
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
        ]
        assert [int(r[0]) for r in rows[1:]] == [on_start, second, tied]
        first = dict(zip(rows[0], rows[1], strict=True))
        assert first == {
            "trade_id": str(on_start),
            "account_id": str(account_id),
            "symbol": "EURUSD",
            "side": "buy",
            "volume": "0.10",
            "open_price": "1.08500000",
            "close_price": "1.09750000",
            "profit": "-3.20",
            "opened_at": (start - timedelta(hours=2)).isoformat(),
            "closed_at": start.isoformat(),
        }
        # Zero prices stay plain decimals (not "0E-8").
        assert rows[2][6:8] == ["0.00000000", "0.00"]

    async def test_should_page_through_a_long_period_without_gaps_or_repeats(
        self, api: ApiClient, app_db: Database
    ) -> None:
        user_id, token = await api.signed_up()
        account_id = await an_account(app_db, user_id)
        day = last_monday() - timedelta(days=7)
        start = midnight(day)
        # 2,500 trades, three per closing second, so ties straddle the 1,000-row page boundaries.
        async with app_db.cursor() as cur:
            await cur.execute(
                "INSERT INTO trades (account_id, user_id, symbol, side, volume, open_price, "
                "close_price, profit, opened_at, closed_at) "
                "SELECT %s, %s, 'XAUUSD', 'sell', 1, 2000, 1990, 10, %s, "
                "%s + (g / 3) * interval '1 second' FROM generate_series(0, 2499) g",
                (account_id, user_id, start, start),
            )
        report_id = (await request(api, token, "weekly", day))[1]["id"]
        status, text, headers = await download(api, f"{REPORTS}/{report_id}/csv", token)
        assert status == 200
        assert headers.get("Transfer-Encoding") == "chunked"  # streamed, not built whole
        rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
        assert len(rows) == 2500
        keys = [(datetime.fromisoformat(r[9]), int(r[0])) for r in rows]
        assert keys == sorted(keys)
        assert len({int(r[0]) for r in rows}) == 2500

    async def test_should_send_only_the_header_for_a_period_without_closed_trades(
        self, api: ApiClient
    ) -> None:
        _, token = await api.signed_up()
        report_id = (await request(api, token, "daily", today()))[1]["id"]
        status, text, _ = await download(api, f"{REPORTS}/{report_id}/csv", token)
        assert status == 200
        assert text.splitlines() == [
            "trade_id,account_id,symbol,side,volume,open_price,close_price,profit,opened_at,closed_at"
        ]

    async def test_should_break_the_transfer_when_the_database_fails_mid_stream(
        self, api: ApiClient, app_db: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure after the first page must not look like a complete (short) file."""
        user_id, token = await api.signed_up()
        account_id = await an_account(app_db, user_id)
        day = today() - timedelta(days=1)
        for second in range(3):
            await trades.record_trade(
                app_db,
                account_id=account_id,
                symbol="EURUSD",
                side="buy",
                volume=Decimal(1),
                open_price=Decimal(1),
                opened_at=midnight(day),
                close_price=Decimal(1),
                profit=Decimal(1),
                closed_at=midnight(day) + timedelta(seconds=second),
            )
        report_id = (await request(api, token, "daily", day))[1]["id"]
        real_page = trades.closed_trades_page
        pages = 0

        async def failing_after_the_first_page(*args: Any, **kwargs: Any) -> list[trades.Trade]:
            nonlocal pages
            pages += 1
            if pages > 1:
                raise psycopg2.OperationalError("server closed the connection unexpectedly")
            return await real_page(*args, **kwargs)

        monkeypatch.setattr(reports_api, "CSV_PAGE", 2)
        monkeypatch.setattr(trades, "closed_trades_page", failing_after_the_first_page)
        with pytest.raises(aiohttp.ClientPayloadError):
            await download(api, f"{REPORTS}/{report_id}/csv", token)
        assert pages == 2
        # The server is fine afterwards.
        monkeypatch.setattr(trades, "closed_trades_page", real_page)
        status, text, _ = await download(api, f"{REPORTS}/{report_id}/csv", token)
        assert (status, len(text.splitlines())) == (200, 4)
