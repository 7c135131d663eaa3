"""What a MetaAPI deal means for the trades table: a position opened, a position closed, or neither.

Pure. A trade row is one MetaAPI position: its ``DEAL_ENTRY_IN`` deal opens it (side, volume,
open price) and its ``DEAL_ENTRY_OUT`` deal closes it (close price, profit). Balance operations,
partial closes and reversals are not trades here (docs/bridge.md lists what is not modelled).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

_SIDES = {"DEAL_TYPE_BUY": "buy", "DEAL_TYPE_SELL": "sell"}


@dataclass(frozen=True, slots=True)
class Opened:
    position_id: str
    symbol: str
    side: str
    volume: Decimal
    price: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class Closed:
    position_id: str
    price: Decimal
    profit: Decimal
    at: datetime


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise ValueError(f"not a time: {value!r}")


def read_deal(deal: dict[str, Any]) -> Opened | Closed | None:
    """The trade event of ``deal``, or None for deals that are not a position's entry or exit.

    Raises ValueError for a trade deal with a malformed field (the caller counts and logs it).
    """
    side = _SIDES.get(str(deal.get("type")))
    position_id = deal.get("positionId")
    if side is None or not position_id:
        return None
    entry = deal.get("entryType")
    if entry == "DEAL_ENTRY_IN":
        return Opened(
            position_id=str(position_id),
            symbol=str(deal["symbol"]),
            side=side,
            volume=_decimal(deal["volume"]),
            price=_decimal(deal["price"]),
            at=_time(deal["time"]),
        )
    if entry == "DEAL_ENTRY_OUT":
        return Closed(
            position_id=str(position_id),
            price=_decimal(deal["price"]),
            profit=_decimal(deal.get("profit", 0)).quantize(Decimal("0.01")),
            at=_time(deal["time"]),
        )
    return None
