"""Broker state of simulated MetaTrader accounts: prices on a seeded random walk, positions, deals, orders.

Pure bookkeeping with no I/O: the transport (streaming.py) turns what these functions return into
MetaAPI packets. Times are passed in so that runs with equal seeds and clocks are equal.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Json = dict[str, Any]

#: Broker server time is UTC+2 (EET), as most MetaTrader brokers run it.
BROKER_OFFSET = timedelta(hours=2)
#: MetaTrader's trade return codes the simulator answers with.
TRADE_DONE = (10009, "TRADE_RETCODE_DONE")
TRADE_INVALID = (10013, "TRADE_RETCODE_INVALID")
TRADE_INVALID_VOLUME = (10014, "TRADE_RETCODE_INVALID_VOLUME")
TRADE_POSITION_CLOSED = (10036, "TRADE_RETCODE_POSITION_CLOSED")


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the broker offers for one symbol."""

    symbol: str
    start_price: float
    digits: int
    spread_points: int
    contract_size: float
    #: Per-tick standard deviation of the log price.
    volatility: float

    @property
    def point(self) -> float:
        return float(10**-self.digits)


INSTRUMENTS: dict[str, Instrument] = {
    i.symbol: i
    for i in (
        Instrument("EURUSD", 1.0850, 5, 12, 100_000, 0.0002),
        Instrument("GBPUSD", 1.2700, 5, 15, 100_000, 0.00025),
        Instrument("USDJPY", 150.00, 3, 14, 100_000, 0.0002),
        Instrument("XAUUSD", 2350.0, 2, 30, 100, 0.0004),
    )
}


def iso(moment: datetime) -> str:
    """MetaAPI's ISO time: UTC with milliseconds and a Z."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def broker_time(moment: datetime) -> str:
    """MetaTrader's broker time string (server time zone, no offset)."""
    shifted = moment.astimezone(UTC) + BROKER_OFFSET
    return shifted.strftime("%Y-%m-%d %H:%M:%S.") + f"{shifted.microsecond // 1000:03d}"


class Market:
    """Bid prices of every instrument, moved by a geometric random walk seeded per symbol."""

    def __init__(self, seed: int) -> None:
        # Not for secrets: a seeded generator makes equal seeds give equal price paths.
        self._walks = {
            s: random.Random(seed ^ zlib.crc32(s.encode()))  # noqa: S311
            for s in INSTRUMENTS
        }
        self._bids = {s: i.start_price for s, i in INSTRUMENTS.items()}

    def tick(self, symbol: str) -> None:
        """Move one symbol's price by one random step."""
        instrument = INSTRUMENTS[symbol]
        step = self._walks[symbol].gauss(0.0, instrument.volatility)
        self._bids[symbol] = round(self._bids[symbol] * math.exp(step), instrument.digits)

    def bid(self, symbol: str) -> float:
        return self._bids[symbol]

    def ask(self, symbol: str) -> float:
        instrument = INSTRUMENTS[symbol]
        return round(
            self._bids[symbol] + instrument.spread_points * instrument.point, instrument.digits
        )

    def usd_per_quote_unit(self, symbol: str) -> float:
        """What one unit of the symbol's quote currency is worth in USD (the account currency)."""
        return 1.0 / self.bid(symbol) if symbol.startswith("USD") else 1.0

    def quote(self, symbol: str, now: datetime) -> Json:
        """A MetaAPI price packet entry."""
        instrument = INSTRUMENTS[symbol]
        tick_value = instrument.contract_size * instrument.point * self.usd_per_quote_unit(symbol)
        return {
            "symbol": symbol,
            "bid": self.bid(symbol),
            "ask": self.ask(symbol),
            "time": iso(now),
            "brokerTime": broker_time(now),
            "profitTickValue": tick_value,
            "lossTickValue": tick_value,
        }


def specification(instrument: Instrument) -> Json:
    """A MetaAPI symbol specification."""
    return {
        "symbol": instrument.symbol,
        "tickSize": instrument.point,
        "minVolume": 0.01,
        "maxVolume": 100.0,
        "volumeStep": 0.01,
        "contractSize": instrument.contract_size,
        "digits": instrument.digits,
        "point": instrument.point,
        "tradeMode": "SYMBOL_TRADE_MODE_FULL",
        "executionMode": "SYMBOL_TRADE_EXECUTION_MARKET",
        "fillingModes": ["SYMBOL_FILLING_FOK", "SYMBOL_FILLING_IOC"],
        "orderModes": ["SYMBOL_ORDER_MARKET", "SYMBOL_ORDER_LIMIT", "SYMBOL_ORDER_STOP"],
        "stopsLevel": 0,
        "freezeLevel": 0,
        "swapMode": "SYMBOL_SWAP_MODE_POINTS",
        "swapLong": 0.0,
        "swapShort": 0.0,
        "currencyBase": instrument.symbol[:3],
        "currencyProfit": instrument.symbol[3:],
        "currencyMargin": instrument.symbol[:3],
        "path": f"Forex\\{instrument.symbol}",
        "description": instrument.symbol,
    }


@dataclass(slots=True)
class Position:
    """An open position; its profit follows the market."""

    id: str
    side: Literal["buy", "sell"]
    symbol: str
    volume: float
    open_price: float
    opened: datetime
    magic: int
    comment: str | None

    def close_price(self, market: Market) -> float:
        return market.bid(self.symbol) if self.side == "buy" else market.ask(self.symbol)

    def profit(self, market: Market) -> float:
        instrument = INSTRUMENTS[self.symbol]
        direction = 1.0 if self.side == "buy" else -1.0
        moved = (self.close_price(market) - self.open_price) * direction
        return round(
            moved * self.volume * instrument.contract_size * market.usd_per_quote_unit(self.symbol),
            2,
        )

    def to_json(self, market: Market, now: datetime) -> Json:
        instrument = INSTRUMENTS[self.symbol]
        profit = self.profit(market)
        return {
            "id": self.id,
            "platform": "mt5",
            "type": "POSITION_TYPE_BUY" if self.side == "buy" else "POSITION_TYPE_SELL",
            "symbol": self.symbol,
            "magic": self.magic,
            "time": iso(self.opened),
            "brokerTime": broker_time(self.opened),
            "updateTime": iso(now),
            "openPrice": self.open_price,
            "currentPrice": self.close_price(market),
            "currentTickValue": instrument.contract_size
            * instrument.point
            * market.usd_per_quote_unit(self.symbol),
            "volume": self.volume,
            "swap": 0.0,
            "commission": 0.0,
            "profit": profit,
            "unrealizedProfit": profit,
            "realizedProfit": 0.0,
            "reason": "POSITION_REASON_EXPERT",
            **({"comment": self.comment} if self.comment else {}),
        }


@dataclass(frozen=True, slots=True)
class TradeResult:
    """What a trade request did: the response fields and the `update` packet body, if anything changed."""

    code: tuple[int, str]
    message: str
    order_id: str | None = None
    position_id: str | None = None
    update: Json | None = None

    def response(self) -> Json:
        numeric, string = self.code
        body: Json = {"numericCode": numeric, "stringCode": string, "message": self.message}
        if self.order_id:
            body["orderId"] = self.order_id
        if self.position_id:
            body["positionId"] = self.position_id
        return body


@dataclass(slots=True)
class BrokerAccount:
    """One MetaTrader account's trading state; it outlives every connection to it during a run."""

    login: str
    server: str
    name: str
    balance: float
    leverage: int = 100
    positions: dict[str, Position] = field(default_factory=dict)
    deals: list[Json] = field(default_factory=list)
    history_orders: list[Json] = field(default_factory=list)
    _next_id: int = 1000

    @classmethod
    def opened(
        cls, *, login: str, server: str, name: str, balance: float, now: datetime
    ) -> BrokerAccount:
        """A new account whose history starts with the deposit."""
        account = cls(login=login, server=server, name=name, balance=balance)
        account.deals.append(
            {
                "id": account._new_id(),
                "platform": "mt5",
                "type": "DEAL_TYPE_BALANCE",
                "time": iso(now),
                "brokerTime": broker_time(now),
                "profit": balance,
                "commission": 0.0,
                "swap": 0.0,
                "comment": "Deposit",
                "reason": "DEAL_REASON_CLIENT",
            }
        )
        return account

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def margin(self, market: Market) -> float:
        total = 0.0
        for p in self.positions.values():
            notional = p.volume * INSTRUMENTS[p.symbol].contract_size * p.open_price
            total += notional * market.usd_per_quote_unit(p.symbol) / self.leverage
        return round(total, 2)

    def equity(self, market: Market) -> float:
        return round(self.balance + sum(p.profit(market) for p in self.positions.values()), 2)

    def information(self, market: Market) -> Json:
        """MetaAPI's accountInformation."""
        equity, margin = self.equity(market), self.margin(market)
        return {
            "platform": "mt5",
            "broker": "AlgoEdge Simulated Broker",
            "currency": "USD",
            "server": self.server,
            "balance": round(self.balance, 2),
            "equity": equity,
            "margin": margin,
            "freeMargin": round(equity - margin, 2),
            "leverage": self.leverage,
            "marginLevel": round(equity / margin * 100, 2) if margin else None,
            "name": self.name,
            "login": int(self.login) if self.login.isdigit() else self.login,
            "credit": 0.0,
            "tradeAllowed": True,
            "investorMode": False,
            "marginMode": "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING",
            "type": "ACCOUNT_TRADE_MODE_DEMO",
        }

    def positions_json(self, market: Market, now: datetime) -> list[Json]:
        return [p.to_json(market, now) for p in self.positions.values()]

    def _fill(
        self,
        *,
        side: Literal["buy", "sell"],
        entry: Literal["DEAL_ENTRY_IN", "DEAL_ENTRY_OUT"],
        symbol: str,
        volume: float,
        price: float,
        position_id: str,
        magic: int,
        profit: float,
        now: datetime,
    ) -> tuple[Json, Json]:
        """The filled history order and its deal."""
        order_id, deal_id = self._new_id(), self._new_id()
        kind = "BUY" if side == "buy" else "SELL"
        order = {
            "id": order_id,
            "platform": "mt5",
            "type": f"ORDER_TYPE_{kind}",
            "state": "ORDER_STATE_FILLED",
            "symbol": symbol,
            "magic": magic,
            "time": iso(now),
            "brokerTime": broker_time(now),
            "doneTime": iso(now),
            "doneBrokerTime": broker_time(now),
            "openPrice": price,
            "volume": volume,
            "currentVolume": 0,
            "positionId": position_id,
            "reason": "ORDER_REASON_EXPERT",
            "fillingMode": "ORDER_FILLING_FOK",
            "expirationType": "ORDER_TIME_GTC",
        }
        deal = {
            "id": deal_id,
            "platform": "mt5",
            "type": f"DEAL_TYPE_{kind}",
            "entryType": entry,
            "symbol": symbol,
            "magic": magic,
            "time": iso(now),
            "brokerTime": broker_time(now),
            "volume": volume,
            "price": price,
            "commission": 0.0,
            "swap": 0.0,
            "profit": profit,
            "positionId": position_id,
            "orderId": order_id,
            "reason": "DEAL_REASON_EXPERT",
        }
        self.history_orders.append(order)
        self.deals.append(deal)
        return order, deal

    def trade(self, request: Json, market: Market, now: datetime) -> TradeResult:
        """Execute a MetaAPI trade request (market orders and closes by position id)."""
        action = request.get("actionType")
        if action in ("ORDER_TYPE_BUY", "ORDER_TYPE_SELL"):
            return self._open(request, market, now, "buy" if action == "ORDER_TYPE_BUY" else "sell")
        if action == "POSITION_CLOSE_ID":
            return self._close(str(request.get("positionId")), market, now)
        return TradeResult(TRADE_INVALID, f"Unsupported actionType {action!r} in the simulator")

    def _open(
        self, request: Json, market: Market, now: datetime, side: Literal["buy", "sell"]
    ) -> TradeResult:
        symbol = request.get("symbol")
        if symbol not in INSTRUMENTS:
            return TradeResult(TRADE_INVALID, f"Unknown symbol {symbol!r}")
        volume = request.get("volume")
        if (
            not isinstance(volume, int | float)
            or not 0.01 <= volume <= 100
            or round(volume, 2) != volume
        ):
            return TradeResult(TRADE_INVALID_VOLUME, "Volume must be 0.01 to 100 in steps of 0.01")
        price = market.ask(symbol) if side == "buy" else market.bid(symbol)
        magic = int(request.get("magic") or 0)
        position_id = self._new_id()
        position = Position(
            position_id, side, symbol, float(volume), price, now, magic, request.get("comment")
        )
        self.positions[position_id] = position
        order, deal = self._fill(
            side=side,
            entry="DEAL_ENTRY_IN",
            symbol=symbol,
            volume=float(volume),
            price=price,
            position_id=position_id,
            magic=magic,
            profit=0.0,
            now=now,
        )
        update = {
            "accountInformation": self.information(market),
            "updatedPositions": [position.to_json(market, now)],
            "removedPositionIds": [],
            "updatedOrders": [],
            "completedOrderIds": [],
            "historyOrders": [order],
            "deals": [deal],
        }
        return TradeResult(TRADE_DONE, "Request completed", order["id"], position_id, update)

    def _close(self, position_id: str, market: Market, now: datetime) -> TradeResult:
        position = self.positions.pop(position_id, None)
        if position is None:
            return TradeResult(TRADE_POSITION_CLOSED, f"Position {position_id} not found")
        profit = position.profit(market)
        self.balance = round(self.balance + profit, 2)
        order, deal = self._fill(
            side="sell" if position.side == "buy" else "buy",
            entry="DEAL_ENTRY_OUT",
            symbol=position.symbol,
            volume=position.volume,
            price=position.close_price(market),
            position_id=position_id,
            magic=position.magic,
            profit=profit,
            now=now,
        )
        update = {
            "accountInformation": self.information(market),
            "updatedPositions": [],
            "removedPositionIds": [position_id],
            "updatedOrders": [],
            "completedOrderIds": [],
            "historyOrders": [order],
            "deals": [deal],
        }
        return TradeResult(TRADE_DONE, "Request completed", order["id"], position_id, update)
