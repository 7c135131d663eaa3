"""Rows filled into the data layer's frozen dataclasses without their ``__init__`` (``rows_as``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from algoedge.db import rows_as
from algoedge.db.marketplace import Bot
from algoedge.db.trades import Trade

NOW = datetime(2026, 12, 2, 11, 0, 0, 123456, tzinfo=UTC)
ROWS = [
    (1, 7, "EURUSD", "buy", Decimal("0.10"), Decimal("1.08345000"), None, None, NOW, None, NOW),
    (2, 7, "XAUUSD", "sell", Decimal("1.00"), Decimal("0E-8"), Decimal("2.5E-7"), Decimal("-6.70"),
     NOW, NOW, NOW),
]  # fmt: skip


class TestRowsAs:
    def test_should_make_what_the_constructor_makes(self) -> None:
        made = rows_as(Trade, ROWS)
        assert made == [Trade(*row) for row in ROWS]
        assert [dataclasses.astuple(t) for t in made] == ROWS
        assert repr(made[1]) == repr(Trade(*ROWS[1]))
        assert hash(made[0]) == hash(Trade(*ROWS[0]))

    def test_should_keep_the_rows_frozen(self) -> None:
        (trade,) = rows_as(Trade, ROWS[:1])
        with pytest.raises(dataclasses.FrozenInstanceError):
            trade.symbol = "GBPUSD"  # type: ignore[misc]

    def test_should_refuse_a_row_of_another_shape(self) -> None:
        with pytest.raises(ValueError, match="zip"):
            rows_as(Bot, ROWS[:1])
        with pytest.raises(ValueError, match="zip"):
            rows_as(Trade, [ROWS[0][:-1]])

    def test_should_make_nothing_of_no_rows(self) -> None:
        assert rows_as(Trade, []) == []
