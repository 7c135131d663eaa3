"""Periodic trader reports, pure: the period arithmetic of the scheduler and the API, and the figures.

No I/O, no clock, no randomness: callers pass ``now`` / ``today`` and the closed trades. Periods are
half-open UTC intervals ``[start, end)`` named by their start date: a daily period is one UTC day,
a weekly period an ISO week (Monday to Monday). Money is :class:`~decimal.Decimal` throughout and
is rounded (half-even) only when a figure is produced, never in between.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any, Final, Literal

ReportKind = Literal["daily", "weekly"]
KINDS: tuple[ReportKind, ...] = ("daily", "weekly")

_PERIOD_LENGTH: Final[dict[str, timedelta]] = {
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
}

#: How far back POST /api/v1/reports may ask (in days before today, inclusive).
MAX_REQUEST_AGE_DAYS: Final = 366

_CENT: Final = Decimal("0.01")
_BASIS_POINT: Final = Decimal("0.0001")
# An explicit context, so the figures do not depend on whatever the calling thread has set.
_ARITHMETIC: Final = Context(
    prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)


class PeriodError(ValueError):
    """A report period an API user asked for that cannot exist or cannot be reported on."""


# --- periods -----------------------------------------------------------------------------------


def _length(kind: ReportKind) -> timedelta:
    try:
        return _PERIOD_LENGTH[kind]
    except KeyError:
        raise PeriodError(
            f"unknown report kind {kind!r}: expected one of {', '.join(KINDS)}"
        ) from None


def _check_start(kind: ReportKind, period_start: date) -> timedelta:
    """The period's length, once ``period_start`` is known to start a ``kind`` period."""
    length = _length(kind)
    if kind == "weekly" and period_start.weekday() != 0:
        raise PeriodError(f"a weekly period starts on a Monday, not {period_start.isoformat()}")
    return length


def _require_aware(name: str, instant: datetime) -> None:
    if instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive {instant.isoformat()}")


def period_bounds(kind: ReportKind, period_start: date) -> tuple[datetime, datetime]:
    """The UTC-aware half-open interval ``[start, end)`` of the ``kind`` period starting then."""
    length = _check_start(kind, period_start)
    start = datetime.combine(period_start, time(0), tzinfo=UTC)
    return start, start + length


def period_of(kind: ReportKind, instant: datetime) -> date:
    """The start date of the ``kind`` period holding the aware ``instant`` (taken in UTC)."""
    _length(kind)
    _require_aware("instant", instant)
    day = instant.astimezone(UTC).date()
    if kind == "weekly":
        return day - timedelta(days=day.weekday())
    return day


def due_at(kind: ReportKind, period_start: date, *, daily_at: time) -> datetime:
    """When the scheduled run of a period is due: ``daily_at`` (UTC) on the day the period ends.

    That is the next day for a daily period and the following Monday for a weekly one, so a
    period's run always comes after its last trade could close.
    """
    if daily_at.utcoffset() is not None:
        raise ValueError(f"daily_at is a naive time meaning UTC, got {daily_at.isoformat()}")
    _, end = period_bounds(kind, period_start)
    return datetime.combine(end.date(), daily_at, tzinfo=UTC)


def due_periods(
    kind: ReportKind, *, now: datetime, daily_at: time, last_scheduled: date | None, lookback: int
) -> list[date]:
    """Starts of the periods whose run is due by ``now`` and not yet scheduled, oldest first.

    A fresh install (``last_scheduled`` None) gets only the most recent due period rather than a
    back-fill; after a gap, at most the ``lookback`` most recent missed periods are returned, so a
    beat that was down for a month does not schedule thirty runs at once.
    """
    if lookback < 1:
        raise ValueError(f"lookback must be at least 1, got {lookback}")
    _require_aware("now", now)
    length = _check_start(kind, last_scheduled) if last_scheduled is not None else _length(kind)
    # The running period is never due (it ends after now); the one before it is once daily_at
    # has passed on its end day. Two steps back at most.
    latest = period_of(kind, now)
    while due_at(kind, latest, daily_at=daily_at) > now:
        latest -= length
    if last_scheduled is None:
        return [latest]
    missed = max(0, (latest - last_scheduled) // length)
    return [latest - back * length for back in reversed(range(min(missed, lookback)))]


def check_requestable(kind: ReportKind, period_start: date, *, today: date) -> None:
    """Refuse, with a :class:`PeriodError`, a period a user may not request on ``today`` (UTC).

    The current, still-running period is allowed: its report is partial.
    """
    _check_start(kind, period_start)
    if period_start > today:
        raise PeriodError(f"the {kind} period starting {period_start.isoformat()} is in the future")
    if (today - period_start).days > MAX_REQUEST_AGE_DAYS:
        raise PeriodError(
            f"the {kind} period starting {period_start.isoformat()} is more than a year ago"
        )


# --- figures -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One closed trade (a position's realised result) as the figures need it."""

    id: int
    account_id: int
    symbol: str
    profit: Decimal
    closed_at: datetime

    def __post_init__(self) -> None:
        # A float or NaN would otherwise surface later as a TypeError or a "NaN" in a report.
        if not isinstance(self.profit, Decimal) or not self.profit.is_finite():
            raise ValueError(
                f"trade {self.id}: profit must be a finite Decimal, got {self.profit!r}"
            )
        _require_aware(f"trade {self.id}: closed_at", self.closed_at)


@dataclass(frozen=True, slots=True)
class Figures:
    """The performance figures of a set of closed trades, rounded for display."""

    trades: int
    wins: int
    losses: int
    #: wins / trades, 4 places; None with no trades.
    win_rate: Decimal | None
    #: Sum of the positive profits, 2 places.
    gross_profit: Decimal
    #: Sum of the negative profits, negative or 0.00 (the MT5 convention), 2 places.
    gross_loss: Decimal
    net_profit: Decimal
    #: gross_profit / -gross_loss, 4 places; None when there is no loss.
    profit_factor: Decimal | None
    #: Largest peak-to-trough drop of cumulative net profit in closing order, from 0, >= 0.
    max_drawdown: Decimal
    best_trade: Decimal | None
    worst_trade: Decimal | None


def _rounded(value: Decimal, places: Decimal) -> Decimal:
    rounded = value.quantize(places, rounding=ROUND_HALF_EVEN)
    # A tiny negative amount must not read "-0.00".
    return rounded.copy_abs() if rounded.is_zero() else rounded


def figures(trades: Iterable[ClosedTrade]) -> Figures:
    """The figures of ``trades``, in any order: the equity curve follows (closed_at, id)."""
    profits = [trade.profit for trade in sorted(trades, key=lambda t: (t.closed_at, t.id))]
    zero = Decimal(0)
    with localcontext(_ARITHMETIC):
        gross_profit = sum((p for p in profits if p > 0), start=zero)
        gross_loss = sum((p for p in profits if p < 0), start=zero)
        equity = peak = max_drawdown = zero
        for profit in profits:
            equity += profit
            peak = max(peak, equity)
            max_drawdown = max(max_drawdown, peak - equity)
        wins = sum(1 for p in profits if p > 0)
        return Figures(
            trades=len(profits),
            wins=wins,
            losses=sum(1 for p in profits if p < 0),
            win_rate=_rounded(Decimal(wins) / len(profits), _BASIS_POINT) if profits else None,
            gross_profit=_rounded(gross_profit, _CENT),
            gross_loss=_rounded(gross_loss, _CENT),
            net_profit=_rounded(gross_profit + gross_loss, _CENT),
            profit_factor=_rounded(gross_profit / -gross_loss, _BASIS_POINT)
            if gross_loss != 0
            else None,
            max_drawdown=_rounded(max_drawdown, _CENT),
            best_trade=_rounded(max(profits), _CENT) if profits else None,
            worst_trade=_rounded(min(profits), _CENT) if profits else None,
        )


def _figures_payload(trades: Iterable[ClosedTrade]) -> dict[str, int | str | None]:
    result = figures(trades)
    payload: dict[str, int | str | None] = {}
    for field in fields(result):
        value = getattr(result, field.name)
        payload[field.name] = str(value) if isinstance(value, Decimal) else value
    return payload


def build_report(trades: Iterable[ClosedTrade]) -> dict[str, Any]:
    """The JSON-ready report: the figures overall, per account and per symbol.

    Decimals become strings ("12.50"), so money keeps its digits through JSON. Accounts are listed
    in numeric order of their ids (keys are strings, as JSON needs), symbols in alphabetical order.
    """
    closed = list(trades)
    by_account: defaultdict[int, list[ClosedTrade]] = defaultdict(list)
    by_symbol: defaultdict[str, list[ClosedTrade]] = defaultdict(list)
    for trade in closed:
        by_account[trade.account_id].append(trade)
        by_symbol[trade.symbol].append(trade)
    return {
        "summary": _figures_payload(closed),
        "by_account": {str(a): _figures_payload(by_account[a]) for a in sorted(by_account)},
        "by_symbol": {s: _figures_payload(by_symbol[s]) for s in sorted(by_symbol)},
    }
