"""The API's response encoder (orjson with ``encode_default``) renders what ``to_jsonable`` does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from algoedge.api.io import render
from algoedge.db.marketplace import Bot, Signal
from algoedge.db.trades import Trade
from algoedge.jsonable import to_jsonable

NOW = datetime(2026, 12, 2, 11, 0, 0, 123456, tzinfo=UTC)


@dataclass
class Outer:
    trades: list[Trade]
    by_id: dict[int, Decimal]
    pair: tuple[str, int]
    when: datetime | None


def trade(i: int, *, closed: bool) -> Trade:
    return Trade(
        id=i,
        account_id=7,
        symbol="EURUSD",
        side="buy",
        volume=Decimal("0.10"),
        open_price=Decimal("1.08345"),
        close_price=Decimal("1.08412") if closed else None,
        profit=Decimal("-6.70") if closed else None,
        opened_at=NOW - timedelta(hours=i),
        closed_at=NOW if closed else None,
        created_at=NOW.replace(microsecond=0),
    )


VALUES: list[Any] = [
    {"items": [trade(1, closed=True), trade(2, closed=False)], "next_cursor": "abc"},
    [Bot(1, "Bot é", "d", "s", "active", Decimal("29.00"), NOW)],
    # A price of zero at the column's scale (numeric(20, 8)) reads back as Decimal("0E-8").
    [Signal(5, 2, "XAUUSD", "sell", Decimal("0E-8"), Decimal("1.5E-7"), None, NOW)],
    Outer(
        trades=[trade(3, closed=True)],
        by_id={1: Decimal("1E+3"), 2: Decimal("0.000001")},
        pair=("x", 1),
        when=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))),
    ),
    {"naive": datetime(2026, 1, 1, 0, 0, 0, 5), "none": None, "n": 1.5, "ok": True},
    # Beyond orjson's 64 bits (the OpenAPI document's integer bounds).
    {"maximum": 2**64, "minimum": -(2**63) - 1, "at": NOW},
]


class TestRender:
    @pytest.mark.parametrize("value", VALUES)
    def test_should_render_the_json_values_to_jsonable_gives(self, value: Any) -> None:
        response = render(value)
        assert response.body is not None
        assert json.loads(bytes(response.body)) == to_jsonable(value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", VALUES[:4])
    def test_should_render_rows_byte_for_byte_as_before(self, value: Any) -> None:
        # The same bytes as the stdlib encoder of to_jsonable's values, compact: field order,
        # timestamps with their offsets and Decimals as str() writes them (0E-8 included).
        response = render(value)
        assert response.body is not None
        expected = json.dumps(to_jsonable(value), separators=(",", ":"), ensure_ascii=False)
        assert bytes(response.body) == expected.encode()  # type: ignore[arg-type]

    def test_should_say_json_in_utf_8(self) -> None:
        response = render({"name": "é"}, status=201, headers={"Location": "/x"})
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert (response.status, response.headers["Location"]) == (201, "/x")

    def test_should_refuse_what_has_no_json_form(self) -> None:
        with pytest.raises(TypeError, match="not JSON serializable"):
            render({"x": object()})
