"""Report periods and figures: the scheduler's and the API's period arithmetic, the report numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import cast

import pytest
from algoedge.reporting import (
    KINDS,
    ClosedTrade,
    Figures,
    PeriodError,
    ReportKind,
    build_report,
    check_requestable,
    due_at,
    due_periods,
    figures,
    period_bounds,
    period_of,
)

MONDAY = date(2026, 3, 2)
SIX_AM = time(6, 0)
UNKNOWN_KIND = cast(ReportKind, "monthly")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def trade(
    trade_id: int, profit: str, *, account: int = 7, symbol: str = "EURUSD", hour: int = 9
) -> ClosedTrade:
    return ClosedTrade(
        id=trade_id,
        account_id=account,
        symbol=symbol,
        profit=Decimal(profit),
        closed_at=utc(2026, 3, 2, hour),
    )


@pytest.fixture
def session() -> list[ClosedTrade]:
    """Eight trades of one Monday on accounts 7 and 12, given out of closing order.

    In closing order, with the equity curve (cumulative net profit from 0):
        id account symbol  profit   equity
        1  7       EURUSD  +120.00  120.00
        2  12      XAUUSD   +80.50  200.50  <- peak
        3  7       US30     -45.25  155.25
        4  12      EURUSD   -30.00  125.25
        5  7       XAUUSD   -60.75   64.50  <- trough: drawdown 200.50 - 64.50 = 136.00
        6  12      US30      +0.00   64.50
        7  7       EURUSD   +95.10  159.60  (15:00, same minute as 8: id decides)
        8  12      XAUUSD   -20.40  139.20
    Taking 8 before 7 would dip to 44.10 and give a drawdown of 156.40.
    """
    return [
        trade(5, "-60.75", account=7, symbol="XAUUSD", hour=13),
        trade(8, "-20.40", account=12, symbol="XAUUSD", hour=15),
        trade(2, "80.50", account=12, symbol="XAUUSD", hour=10),
        trade(6, "0.00", account=12, symbol="US30", hour=14),
        trade(1, "120.00", account=7, symbol="EURUSD", hour=9),
        trade(7, "95.10", account=7, symbol="EURUSD", hour=15),
        trade(4, "-30.00", account=12, symbol="EURUSD", hour=12),
        trade(3, "-45.25", account=7, symbol="US30", hour=11),
    ]


class TestPeriodBounds:
    def test_should_cover_one_utc_day_for_a_daily_period(self) -> None:
        assert period_bounds("daily", date(2026, 2, 28)) == (utc(2026, 2, 28), utc(2026, 3, 1))

    def test_should_cover_monday_to_monday_for_a_weekly_period(self) -> None:
        assert period_bounds("weekly", MONDAY) == (utc(2026, 3, 2), utc(2026, 3, 9))

    def test_should_span_the_new_year_with_the_iso_week(self) -> None:
        # 2025-12-29 is the Monday of ISO week 1 of 2026.
        assert period_bounds("weekly", date(2025, 12, 29)) == (utc(2025, 12, 29), utc(2026, 1, 5))

    def test_should_refuse_a_weekly_period_not_starting_on_a_monday(self) -> None:
        with pytest.raises(PeriodError, match="a weekly period starts on a Monday"):
            period_bounds("weekly", date(2026, 3, 4))

    def test_should_refuse_an_unknown_kind(self) -> None:
        with pytest.raises(PeriodError, match="unknown report kind 'monthly'"):
            period_bounds(UNKNOWN_KIND, MONDAY)


class TestPeriodOf:
    @pytest.mark.parametrize("kind", KINDS)
    def test_should_put_an_instant_on_the_boundary_in_the_period_it_starts(
        self, kind: ReportKind
    ) -> None:
        # Half-open periods: midnight starts 2026-03-02 (a Monday), it does not end 2026-03-01.
        assert period_of(kind, utc(2026, 3, 2)) == MONDAY

    def test_should_put_the_last_microsecond_in_the_period_it_ends(self) -> None:
        assert period_of("daily", utc(2026, 3, 1, 23, 59, 59, 999_999)) == date(2026, 3, 1)
        assert period_of("weekly", utc(2026, 3, 1, 23, 59, 59, 999_999)) == date(2026, 2, 23)

    def test_should_find_the_monday_of_the_week(self) -> None:
        assert period_of("weekly", utc(2026, 1, 1, 12)) == date(2025, 12, 29)

    def test_should_convert_to_utc_before_taking_the_date(self) -> None:
        # 01:30 at +02:00 on Monday 2026-03-02 is 23:30 UTC on Sunday 2026-03-01, a week earlier.
        instant = datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=2)))
        assert period_of("daily", instant) == date(2026, 3, 1)
        assert period_of("weekly", instant) == date(2026, 2, 23)

    def test_should_refuse_a_naive_instant(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            period_of("daily", datetime(2026, 3, 2, 12))

    def test_should_refuse_an_unknown_kind(self) -> None:
        with pytest.raises(PeriodError):
            period_of(UNKNOWN_KIND, utc(2026, 3, 2))


class TestDueAt:
    def test_should_be_due_on_the_next_day_for_a_daily_period(self) -> None:
        assert due_at("daily", date(2026, 2, 28), daily_at=SIX_AM) == utc(2026, 3, 1, 6)

    def test_should_be_due_on_the_following_monday_for_a_weekly_period(self) -> None:
        # The week of Monday 2026-03-30 ends in April.
        assert due_at("weekly", date(2026, 3, 30), daily_at=SIX_AM) == utc(2026, 4, 6, 6)

    def test_should_refuse_a_weekly_period_not_starting_on_a_monday(self) -> None:
        with pytest.raises(PeriodError):
            due_at("weekly", date(2026, 3, 31), daily_at=SIX_AM)

    def test_should_refuse_an_aware_daily_at(self) -> None:
        with pytest.raises(ValueError, match="naive time meaning UTC"):
            due_at("daily", MONDAY, daily_at=time(6, tzinfo=timezone(timedelta(hours=1))))


class TestDuePeriods:
    def test_should_not_have_yesterday_due_before_the_due_minute(self) -> None:
        # Yesterday (03-02) is due 03-03 06:00; the day before is the latest due one.
        now = utc(2026, 3, 3, 5, 59, 59)
        assert due_periods("daily", now=now, daily_at=SIX_AM, last_scheduled=None, lookback=7) == [
            date(2026, 3, 1)
        ]

    def test_should_have_yesterday_due_at_the_due_minute(self) -> None:
        now = utc(2026, 3, 3, 6)
        assert due_periods("daily", now=now, daily_at=SIX_AM, last_scheduled=None, lookback=7) == [
            date(2026, 3, 2)
        ]

    def test_should_compare_with_now_in_utc(self) -> None:
        # 07:30 at +02:00 is 05:30 UTC: 03-02 is not due yet.
        now = datetime(2026, 3, 3, 7, 30, tzinfo=timezone(timedelta(hours=2)))
        assert due_periods(
            "daily", now=now, daily_at=SIX_AM, last_scheduled=date(2026, 2, 28), lookback=7
        ) == [date(2026, 3, 1)]

    def test_should_schedule_only_the_latest_period_on_a_fresh_install(self) -> None:
        # Sunday 2026-04-05: the week of 03-30 is still running, the week of 03-23 was due
        # 03-30 06:00, older weeks are not back-filled.
        now = utc(2026, 4, 5, 12)
        assert due_periods("weekly", now=now, daily_at=SIX_AM, last_scheduled=None, lookback=4) == [
            date(2026, 3, 23)
        ]

    def test_should_catch_up_every_period_missed_after_a_gap(self) -> None:
        now = utc(2026, 3, 3, 6, 30)
        assert due_periods(
            "daily", now=now, daily_at=SIX_AM, last_scheduled=date(2026, 2, 27), lookback=7
        ) == [date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)]

    def test_should_cap_a_long_gap_at_the_lookback_most_recent_periods(self) -> None:
        # A month down: 02-01 .. 03-02 are all missed, only the last 3 are scheduled.
        now = utc(2026, 3, 3, 7)
        assert due_periods(
            "daily", now=now, daily_at=SIX_AM, last_scheduled=date(2026, 1, 31), lookback=3
        ) == [date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)]

    def test_should_schedule_nothing_when_up_to_date(self) -> None:
        now = utc(2026, 3, 3, 7)
        assert (
            due_periods(
                "daily", now=now, daily_at=SIX_AM, last_scheduled=date(2026, 3, 2), lookback=7
            )
            == []
        )

    def test_should_schedule_nothing_when_the_last_run_is_ahead_of_the_clock(self) -> None:
        now = utc(2026, 3, 3, 7)
        assert (
            due_periods(
                "daily", now=now, daily_at=SIX_AM, last_scheduled=date(2026, 3, 5), lookback=7
            )
            == []
        )

    def test_should_schedule_a_weekly_period_across_a_month_boundary(self) -> None:
        # The week of 03-30 ends Monday 04-06 and is due at 06:00 that day.
        before = utc(2026, 4, 6, 5, 59)
        at = utc(2026, 4, 6, 6)
        last = date(2026, 3, 23)
        assert (
            due_periods("weekly", now=before, daily_at=SIX_AM, last_scheduled=last, lookback=4)
            == []
        )
        assert due_periods("weekly", now=at, daily_at=SIX_AM, last_scheduled=last, lookback=4) == [
            date(2026, 3, 30)
        ]

    def test_should_catch_up_weeks_oldest_first(self) -> None:
        now = utc(2026, 4, 6, 6)
        assert due_periods(
            "weekly", now=now, daily_at=SIX_AM, last_scheduled=date(2026, 3, 2), lookback=4
        ) == [date(2026, 3, 9), date(2026, 3, 16), date(2026, 3, 23), date(2026, 3, 30)]

    def test_should_refuse_a_lookback_below_one(self) -> None:
        with pytest.raises(ValueError, match="lookback"):
            due_periods(
                "daily", now=utc(2026, 3, 3), daily_at=SIX_AM, last_scheduled=None, lookback=0
            )

    def test_should_refuse_a_naive_now(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            due_periods(
                "daily",
                now=datetime(2026, 3, 3, 7),
                daily_at=SIX_AM,
                last_scheduled=None,
                lookback=1,
            )


class TestCheckRequestable:
    TODAY = date(2026, 3, 4)  # a Wednesday

    def test_should_allow_today(self) -> None:
        check_requestable("daily", self.TODAY, today=self.TODAY)

    def test_should_allow_the_running_week(self) -> None:
        check_requestable("weekly", MONDAY, today=self.TODAY)

    @pytest.mark.parametrize(
        ("kind", "start"), [("daily", date(2026, 3, 5)), ("weekly", date(2026, 3, 9))]
    )
    def test_should_refuse_a_period_in_the_future(self, kind: ReportKind, start: date) -> None:
        with pytest.raises(PeriodError, match="is in the future"):
            check_requestable(kind, start, today=self.TODAY)

    def test_should_allow_a_period_366_days_ago(self) -> None:
        # 2026-03-04 - 366 days = 2025-03-03 (2025 is not a leap year).
        check_requestable("daily", date(2025, 3, 3), today=self.TODAY)

    def test_should_refuse_a_period_367_days_ago(self) -> None:
        with pytest.raises(PeriodError, match="is more than a year ago"):
            check_requestable("daily", date(2025, 3, 2), today=self.TODAY)

    def test_should_refuse_a_weekly_period_not_starting_on_a_monday(self) -> None:
        with pytest.raises(PeriodError, match="a weekly period starts on a Monday"):
            check_requestable("weekly", self.TODAY, today=self.TODAY)

    def test_should_refuse_an_unknown_kind(self) -> None:
        with pytest.raises(PeriodError, match="unknown report kind"):
            check_requestable(UNKNOWN_KIND, self.TODAY, today=self.TODAY)


class TestClosedTrade:
    def test_should_refuse_a_float_profit(self) -> None:
        with pytest.raises(ValueError, match="finite Decimal"):
            ClosedTrade(
                id=1,
                account_id=7,
                symbol="EURUSD",
                profit=cast(Decimal, 1.5),
                closed_at=utc(2026, 3, 2),
            )

    def test_should_refuse_a_nan_profit(self) -> None:
        with pytest.raises(ValueError, match="finite Decimal"):
            trade(1, "NaN")

    def test_should_refuse_a_naive_closing_time(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            ClosedTrade(
                id=1,
                account_id=7,
                symbol="EURUSD",
                profit=Decimal("1.00"),
                closed_at=datetime(2026, 3, 2),
            )


class TestFigures:
    def test_should_compute_the_session_figures(self, session: list[ClosedTrade]) -> None:
        # wins 1, 2, 7; losses 3, 4, 5, 8; trade 6 is neither.
        # win rate 3/8 = 0.375; gross profit 120.00 + 80.50 + 95.10 = 295.60;
        # gross loss -(45.25 + 30.00 + 60.75 + 20.40) = -156.40; net 139.20 (the last equity);
        # profit factor 295.60 / 156.40 = 1.89002557... -> 1.8900.
        assert figures(session) == Figures(
            trades=8,
            wins=3,
            losses=4,
            win_rate=Decimal("0.3750"),
            gross_profit=Decimal("295.60"),
            gross_loss=Decimal("-156.40"),
            net_profit=Decimal("139.20"),
            profit_factor=Decimal("1.8900"),
            max_drawdown=Decimal("136.00"),
            best_trade=Decimal("120.00"),
            worst_trade=Decimal("-60.75"),
        )

    def test_should_not_depend_on_the_input_order(self, session: list[ClosedTrade]) -> None:
        assert figures(reversed(session)) == figures(sorted(session, key=lambda t: t.id))

    def test_should_report_nothing_for_no_trades(self) -> None:
        assert figures([]) == Figures(
            trades=0,
            wins=0,
            losses=0,
            win_rate=None,
            gross_profit=Decimal("0.00"),
            gross_loss=Decimal("0.00"),
            net_profit=Decimal("0.00"),
            profit_factor=None,
            max_drawdown=Decimal("0.00"),
            best_trade=None,
            worst_trade=None,
        )

    def test_should_have_no_profit_factor_and_no_drawdown_with_only_wins(self) -> None:
        # Equity 10.00, 15.25, 15.26: always a new peak.
        result = figures([trade(1, "10", hour=9), trade(2, "5.25", hour=10), trade(3, "0.01")])
        assert result.profit_factor is None
        assert result.max_drawdown == Decimal("0.00")
        assert result.gross_loss == Decimal("0.00")
        assert result.win_rate == Decimal("1.0000")
        assert result.net_profit == Decimal("15.26")

    def test_should_measure_drawdown_from_the_starting_zero(self) -> None:
        # Equity -5.00, -2.00, -9.50: the peak stays the starting 0, the trough is -9.50.
        result = figures(
            [trade(1, "-5", hour=9), trade(2, "3", hour=10), trade(3, "-7.5", hour=11)]
        )
        assert result.max_drawdown == Decimal("9.50")
        # 3.00 / 12.50 = 0.24
        assert result.profit_factor == Decimal("0.2400")

    def test_should_count_a_zero_profit_trade_as_neither_win_nor_loss(self) -> None:
        result = figures([trade(1, "0.00"), trade(2, "4.00", hour=10), trade(3, "-1.00", hour=11)])
        assert (result.trades, result.wins, result.losses) == (3, 1, 1)
        # 1/3 = 0.33333... -> 0.3333
        assert result.win_rate == Decimal("0.3333")

    def test_should_round_only_the_final_values(self) -> None:
        # Each 0.005 would round (half-even) to 0.00; their sum 0.010 is 0.01.
        result = figures([trade(1, "0.005", hour=9), trade(2, "0.005", hour=10)])
        assert result.gross_profit == Decimal("0.01")
        assert result.best_trade == Decimal("0.00")

    def test_should_round_half_to_even(self) -> None:
        # 0.125 -> 0.12 and 0.135 -> 0.14 (half-up would give 0.13 for the first).
        assert figures([trade(1, "0.125")]).gross_profit == Decimal("0.12")
        assert figures([trade(1, "0.135")]).gross_profit == Decimal("0.14")

    def test_should_not_report_a_negative_zero(self) -> None:
        # net 0.001 - 0.005 = -0.004 rounds to zero, shown as 0.00 rather than -0.00.
        result = figures([trade(1, "0.001", hour=9), trade(2, "-0.005", hour=10)])
        assert str(result.net_profit) == "0.00"
        assert str(result.worst_trade) == "0.00"


class TestBuildReport:
    def test_should_break_the_figures_down_by_account_and_symbol(
        self, session: list[ClosedTrade]
    ) -> None:
        report = build_report(iter(session))
        assert report["summary"] == {
            "trades": 8,
            "wins": 3,
            "losses": 4,
            "win_rate": "0.3750",
            "gross_profit": "295.60",
            "gross_loss": "-156.40",
            "net_profit": "139.20",
            "profit_factor": "1.8900",
            "max_drawdown": "136.00",
            "best_trade": "120.00",
            "worst_trade": "-60.75",
        }
        # Accounts in numeric order (7 before 12), symbols alphabetically.
        assert list(report["by_account"]) == ["7", "12"]
        assert list(report["by_symbol"]) == ["EURUSD", "US30", "XAUUSD"]

    def test_should_compute_each_account_on_its_own_equity_curve(
        self, session: list[ClosedTrade]
    ) -> None:
        by_account = build_report(session)["by_account"]
        # Account 7: +120.00, -45.25, -60.75, +95.10; equity 120.00 (peak), 74.75, 14.00, 109.10.
        # Profit factor 215.10 / 106.00 = 2.02924... -> 2.0292.
        assert by_account["7"] == {
            "trades": 4,
            "wins": 2,
            "losses": 2,
            "win_rate": "0.5000",
            "gross_profit": "215.10",
            "gross_loss": "-106.00",
            "net_profit": "109.10",
            "profit_factor": "2.0292",
            "max_drawdown": "106.00",
            "best_trade": "120.00",
            "worst_trade": "-60.75",
        }
        # Account 12: +80.50, -30.00, 0.00, -20.40; equity 80.50 (peak), 50.50, 50.50, 30.10.
        # Profit factor 80.50 / 50.40 = 1.597222... -> 1.5972.
        assert by_account["12"] == {
            "trades": 4,
            "wins": 1,
            "losses": 2,
            "win_rate": "0.2500",
            "gross_profit": "80.50",
            "gross_loss": "-50.40",
            "net_profit": "30.10",
            "profit_factor": "1.5972",
            "max_drawdown": "50.40",
            "best_trade": "80.50",
            "worst_trade": "-30.00",
        }

    def test_should_compute_each_symbol_on_its_own_equity_curve(
        self, session: list[ClosedTrade]
    ) -> None:
        by_symbol = build_report(session)["by_symbol"]
        # EURUSD: +120.00, -30.00, +95.10; equity 120.00, 90.00, 185.10; 2/3 -> 0.6667;
        # profit factor 215.10 / 30.00 = 7.17.
        assert by_symbol["EURUSD"] == {
            "trades": 3,
            "wins": 2,
            "losses": 1,
            "win_rate": "0.6667",
            "gross_profit": "215.10",
            "gross_loss": "-30.00",
            "net_profit": "185.10",
            "profit_factor": "7.1700",
            "max_drawdown": "30.00",
            "best_trade": "120.00",
            "worst_trade": "-30.00",
        }
        # US30: -45.25, 0.00; no gain at all, so the peak is the starting 0: drawdown 45.25.
        assert by_symbol["US30"] == {
            "trades": 2,
            "wins": 0,
            "losses": 1,
            "win_rate": "0.0000",
            "gross_profit": "0.00",
            "gross_loss": "-45.25",
            "net_profit": "-45.25",
            "profit_factor": "0.0000",
            "max_drawdown": "45.25",
            "best_trade": "0.00",
            "worst_trade": "-45.25",
        }
        # XAUUSD: +80.50, -60.75, -20.40; equity 80.50, 19.75, -0.65; 1/3 -> 0.3333;
        # profit factor 80.50 / 81.15 = 0.99199... -> 0.9920.
        assert by_symbol["XAUUSD"] == {
            "trades": 3,
            "wins": 1,
            "losses": 2,
            "win_rate": "0.3333",
            "gross_profit": "80.50",
            "gross_loss": "-81.15",
            "net_profit": "-0.65",
            "profit_factor": "0.9920",
            "max_drawdown": "81.15",
            "best_trade": "80.50",
            "worst_trade": "-60.75",
        }

    def test_should_render_an_empty_report(self) -> None:
        assert build_report([]) == {
            "summary": {
                "trades": 0,
                "wins": 0,
                "losses": 0,
                "win_rate": None,
                "gross_profit": "0.00",
                "gross_loss": "0.00",
                "net_profit": "0.00",
                "profit_factor": None,
                "max_drawdown": "0.00",
                "best_trade": None,
                "worst_trade": None,
            },
            "by_account": {},
            "by_symbol": {},
        }
