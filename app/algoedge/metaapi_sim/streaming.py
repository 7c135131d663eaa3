"""MetaAPI's streaming protocol on socket.io (Engine.IO 3): subscriptions, synchronization, live updates, trades.

Speaks to python-socketio 4's ``AsyncServer`` (the version metaapi-cloud-sdk 29.x talks to); the
server object is created in app.py and handed in, so this module never imports socket.io.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from algoedge.metaapi_sim.accounts import ProvisionedAccount
from algoedge.metaapi_sim.broker import (
    INSTRUMENTS,
    Json,
    Market,
    TradeResult,
    iso,
    specification,
)
from algoedge.metaapi_sim.errors import error_body, too_many_requests
from algoedge.metaapi_sim.faults import REFUSAL_MESSAGES, Faults
from algoedge.metaapi_sim.observe import SubscriptionLog
from algoedge.metaapi_sim.settings import SimSettings

log = logging.getLogger(__name__)

#: The server host name the simulator reports; the SDK keys its instances by it.
HOST = "ps-mpa-0"
#: Request types the simulator acknowledges with a plain response and nothing else.
#: Trade answers remembered for repeated request ids.
TRADE_MEMORY = 10_000
ACKNOWLEDGED = frozenset({"saveUptime", "refreshSymbolQuotes", "removeApplication"})


@dataclass(slots=True)
class Socket:
    """One connected socket.io client."""

    sid: str
    client_id: str | None
    #: Market-data symbols per (account id, instance index) this socket subscribed to.
    market_data: dict[tuple[str, int], set[str]] = field(default_factory=dict)


class Streaming:
    """The socket.io side of the simulator; ``sio`` is a python-socketio 4 AsyncServer."""

    def __init__(
        self,
        *,
        sio: Any,
        settings: SimSettings,
        accounts: dict[str, ProvisionedAccount],
        market: Market,
        faults: Faults,
        subscriptions: SubscriptionLog,
        clock: Callable[[], datetime],
    ) -> None:
        self.sio = sio
        self.settings = settings
        self.accounts = accounts
        self.market = market
        self.faults = faults
        self.subscriptions = subscriptions
        self.clock = clock
        self.sockets: dict[str, Socket] = {}
        #: Sequence numbers per socket, account and instance index (the SDK orders packets per instance).
        self._sequences: dict[tuple[str, str, int], itertools.count[int]] = {}
        self._last_sequence_ms = 0
        self._trades: OrderedDict[tuple[str, str], TradeResult] = OrderedDict()
        # Not for secrets: the strategy's choices repeat with the seed.
        self._strategy_rng = random.Random(settings.seed + 2)  # noqa: S311
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("request", self._on_request)

    # -- transport -------------------------------------------------------------------------
    async def _send(self, sid: str, event: str, data: Json) -> None:
        if sid in self.faults.stalled_sockets or sid not in self.sockets:
            return
        await self.sio.emit(event, data, to=sid)

    async def _delay(self) -> None:
        delay_ms = self.settings.latency_ms + self.faults.latency_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)

    async def _on_connect(self, sid: str, environ: dict[str, Any]) -> bool:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        token = (query.get("auth-token") or [""])[0]
        if token != self.settings.token.get_secret_value():
            log.info("refused socket %s: wrong auth-token", sid)
            return False
        client_id = (query.get("clientId") or [None])[0]
        self.sockets[sid] = Socket(sid, client_id)
        return True

    async def _on_disconnect(self, sid: str) -> None:
        self.sockets.pop(sid, None)
        for key in [k for k in self._sequences if k[0] == sid]:
            del self._sequences[key]
        self.faults.stalled_sockets.discard(sid)
        now = self.clock()
        for record in self.subscriptions.open_for_socket(sid):
            self.subscriptions.end(
                socket_id=sid,
                account_id=record.account_id,
                instance_index=record.instance_index,
                reason="socket closed",
                now=now,
            )

    async def drop_all(self) -> int:
        """Close every socket at once (a reconnect storm); one by one, as server-wide disconnect is broken in v4."""
        sids = list(self.sockets)
        await asyncio.gather(*(self.sio.disconnect(sid) for sid in sids))
        return len(sids)

    def stall(self, *, socket_id: str | None = None, account_id: str | None = None) -> list[str]:
        """Stop answering the given socket, or every socket holding the account; returns the sockets."""
        if socket_id is not None:
            targets = [socket_id] if socket_id in self.sockets else []
        else:
            targets = sorted(
                {r.socket_id for r in self.subscriptions.open_for_account(account_id or "")}
            )
        self.faults.stalled_sockets.update(targets)
        return targets

    # -- requests --------------------------------------------------------------------------
    async def _on_request(self, sid: str, data: Any) -> None:
        if sid in self.faults.stalled_sockets:
            return
        await self._delay()
        if not isinstance(data, dict) or not isinstance(data.get("requestId"), str):
            log.warning("socket %s sent a request without a requestId; ignored", sid)
            return
        request_id, account_id = data["requestId"], str(data.get("accountId", ""))
        instance = data.get("instanceIndex", 0) if isinstance(data.get("instanceIndex"), int) else 0
        kind = data.get("type")
        log.debug("socket %s: %s for %s:%s", sid, kind, account_id, instance)
        if self.faults.throttled():
            await self._error(
                sid, request_id, too_many_requests(self.clock(), self.faults.throttle_retry_seconds)
            )
            return
        account = self.accounts.get(account_id)
        if account is None:
            await self._error(
                sid, request_id, error_body("NotFoundError", f"Account {account_id} not found")
            )
            return
        handler = {
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "synchronize": self._synchronize,
            "waitSynchronized": self._respond_only,
            "subscribeToMarketData": self._subscribe_market_data,
            "unsubscribeFromMarketData": self._unsubscribe_market_data,
            "refreshMarketDataSubscriptions": self._refresh_market_data,
            "trade": self._trade,
            "getAccountInformation": self._account_information,
            "getPositions": self._positions,
            "getServerTime": self._server_time,
            "getSymbolPrice": self._symbol_price,
            "getSymbols": self._symbols,
            "getSymbolSpecification": self._symbol_specification,
        }.get(str(kind))
        if handler is None and kind in ACKNOWLEDGED:
            handler = self._respond_only
        if handler is None:
            await self._error(
                sid,
                request_id,
                error_body(
                    "ValidationError", f"Request type {kind!r} is not supported by the simulator"
                ),
            )
            return
        await handler(sid, account, instance, data)

    def _response(
        self, account: ProvisionedAccount, instance: int, data: Json, **body: Any
    ) -> Json:
        return {
            "type": "response",
            "accountId": account.id,
            "requestId": data["requestId"],
            "instanceIndex": instance,
            **body,
        }

    async def _error(self, sid: str, request_id: str, body: Json) -> None:
        await self._send(sid, "processingError", {**body, "requestId": request_id})

    async def _respond_only(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        await self._send(sid, "response", self._response(account, instance, data))

    def _packet(self, account: ProvisionedAccount, instance: int, kind: str, **body: Any) -> Json:
        return {
            "type": kind,
            "accountId": account.id,
            "instanceIndex": instance,
            "host": HOST,
            **body,
        }

    async def _subscribe(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        await self._respond_only(sid, account, instance, data)
        refusal = self.faults.refusal(account_id=account.id, server=account.spec.server)
        if refusal is not None or not account.streamable or instance >= account.replicas:
            # MetaAPI keeps the subscription pending while the terminal cannot reach the broker,
            # and an instance index that does not host the account never authenticates; the SDK
            # retries the subscribe (3 s doubling) until one authenticates.
            return
        socket = self.sockets.get(sid)
        self.subscriptions.start(
            account_id=account.id,
            instance_index=instance,
            socket_id=sid,
            client_id=socket.client_id if socket else None,
            now=self.clock(),
        )
        authenticated = self._packet(account, instance, "authenticated", replicas=account.replicas)
        if "sessionId" in data:
            authenticated["sessionId"] = data["sessionId"]
        await self._send(sid, "synchronization", authenticated)
        await self._send(sid, "synchronization", self._status(account, instance))

    async def _unsubscribe(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        now = self.clock()
        for index in (0, 1) if data.get("instanceIndex") is None else (instance,):
            self.subscriptions.end(
                socket_id=sid,
                account_id=account.id,
                instance_index=index,
                reason="unsubscribed",
                now=now,
            )
            if socket := self.sockets.get(sid):
                socket.market_data.pop((account.id, index), None)
        await self._respond_only(sid, account, instance, data)

    def _status(self, account: ProvisionedAccount, instance: int) -> Json:
        connected = self.faults.refusal(account_id=account.id, server=account.spec.server) is None
        return self._packet(
            account,
            instance,
            "status",
            connected=connected,
            authenticated=connected,
            healthStatus={"rpcApiHealthy": True, "restApiHealthy": True},
        )

    def _sequence_stamp(self, sid: str, account_id: str, instance: int) -> tuple[int, int]:
        now_ms = max(int(time.time() * 1000), self._last_sequence_ms + 1)
        self._last_sequence_ms = now_ms
        counter = self._sequences.setdefault((sid, account_id, instance), itertools.count(1))
        return next(counter), now_ms

    async def _synchronize(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        await self._respond_only(sid, account, instance, data)
        sync_id = data["requestId"]
        now = self.clock()
        broker = account.broker
        deals_from = str(data.get("startingDealTime") or "")
        orders_from = str(data.get("startingHistoryOrderTime") or "")
        sequence: list[tuple[str, Json]] = [
            (
                "synchronizationStarted",
                {"specificationsUpdated": True, "positionsUpdated": True, "ordersUpdated": True},
            ),
            ("accountInformation", {"accountInformation": broker.information(self.market)}),
            (
                "specifications",
                {
                    "specifications": [specification(i) for i in INSTRUMENTS.values()],
                    "removedSymbols": [],
                },
            ),
            ("positions", {"positions": broker.positions_json(self.market, now)}),
            ("orders", {"orders": []}),
            (
                "historyOrders",
                {"historyOrders": [o for o in broker.history_orders if o["time"] >= orders_from]},
            ),
            ("orderSynchronizationFinished", {}),
            ("deals", {"deals": [d for d in broker.deals if d["time"] >= deals_from]}),
            ("dealSynchronizationFinished", {}),
        ]
        for kind, body in sequence:
            number, stamp = self._sequence_stamp(sid, account.id, instance)
            packet = self._packet(
                account,
                instance,
                kind,
                synchronizationId=sync_id,
                sequenceNumber=number,
                sequenceTimestamp=stamp,
                **body,
            )
            await self._send(sid, "synchronization", packet)
        held = self.subscriptions.held(
            socket_id=sid, account_id=account.id, instance_index=instance
        )
        if held is not None and sid in self.sockets:
            held.synchronizations += 1

    async def _subscribe_market_data(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        symbol = data.get("symbol")
        if symbol not in INSTRUMENTS:
            await self._error(
                sid,
                data["requestId"],
                error_body(
                    "NotFoundError", f"Symbol {symbol!r} not found", details="E_SYMBOL_NOT_FOUND"
                ),
            )
            return
        if socket := self.sockets.get(sid):
            socket.market_data.setdefault((account.id, instance), set()).add(str(symbol))
        await self._respond_only(sid, account, instance, data)
        await self._send(sid, "synchronization", self._prices(account, instance, [str(symbol)]))

    async def _unsubscribe_market_data(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        if socket := self.sockets.get(sid):
            socket.market_data.get((account.id, instance), set()).discard(str(data.get("symbol")))
        await self._respond_only(sid, account, instance, data)

    async def _refresh_market_data(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        wanted = {
            str(s.get("symbol"))
            for s in data.get("subscriptions") or []
            if isinstance(s, dict) and s.get("symbol") in INSTRUMENTS
        }
        if socket := self.sockets.get(sid):
            socket.market_data[(account.id, instance)] = wanted
        await self._respond_only(sid, account, instance, data)

    def _prices(self, account: ProvisionedAccount, instance: int, symbols: list[str]) -> Json:
        now = self.clock()
        information = account.broker.information(self.market)
        return self._packet(
            account,
            instance,
            "prices",
            prices=[self.market.quote(s, now) for s in symbols],
            equity=information["equity"],
            margin=information["margin"],
            freeMargin=information["freeMargin"],
            marginLevel=information["marginLevel"],
        )

    async def _trade(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        request = data.get("trade")
        if not isinstance(request, dict):
            await self._error(
                sid, data["requestId"], error_body("ValidationError", "trade must be an object")
            )
            return
        refusal = self.faults.refusal(account_id=account.id, server=account.spec.server)
        if refusal is not None or not account.streamable:
            message = (
                REFUSAL_MESSAGES[refusal]
                if refusal
                else "The account is not connected to the broker"
            )
            await self._error(sid, data["requestId"], error_body("NotSynchronizedError", message))
            return
        # The SDK sends a trade to every instance index that hosts the account; the terminal is
        # one, so a repeated requestId gets the first answer and trades nothing.
        key = (account.id, data["requestId"])
        result = self._trades.get(key)
        repeated = result is not None
        if result is None:
            result = account.broker.trade(request, self.market, self.clock())
            self._trades[key] = result
            while len(self._trades) > TRADE_MEMORY:
                self._trades.popitem(last=False)
        response = self._response(account, instance, data, response=result.response())
        await self._send(sid, "response", response)
        if result.update is not None and not repeated:
            await self.broadcast_update(account, result.update)

    async def broadcast_update(self, account: ProvisionedAccount, update: Json) -> None:
        """Send an `update` packet to every socket subscribed to the account."""
        await asyncio.gather(
            *(
                self._send(
                    r.socket_id,
                    "synchronization",
                    self._packet(account, r.instance_index, "update", **update),
                )
                for r in self.subscriptions.open_for_account(account.id)
            )
        )

    async def _account_information(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        info = account.broker.information(self.market)
        await self._send(
            sid, "response", self._response(account, instance, data, accountInformation=info)
        )

    async def _positions(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        positions = account.broker.positions_json(self.market, self.clock())
        await self._send(
            sid, "response", self._response(account, instance, data, positions=positions)
        )

    async def _server_time(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        now = self.clock()
        server_time = {
            "time": iso(now),
            "brokerTime": self.market.quote("EURUSD", now)["brokerTime"],
        }
        await self._send(
            sid, "response", self._response(account, instance, data, serverTime=server_time)
        )

    async def _symbol_price(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        symbol = data.get("symbol")
        if symbol not in INSTRUMENTS:
            await self._error(
                sid, data["requestId"], error_body("NotFoundError", f"Symbol {symbol!r} not found")
            )
            return
        price = self.market.quote(str(symbol), self.clock())
        await self._send(sid, "response", self._response(account, instance, data, price=price))

    async def _symbols(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        await self._send(
            sid, "response", self._response(account, instance, data, symbols=list(INSTRUMENTS))
        )

    async def _symbol_specification(
        self, sid: str, account: ProvisionedAccount, instance: int, data: Json
    ) -> None:
        symbol = data.get("symbol")
        if symbol not in INSTRUMENTS:
            await self._error(
                sid, data["requestId"], error_body("NotFoundError", f"Symbol {symbol!r} not found")
            )
            return
        spec = specification(INSTRUMENTS[str(symbol)])
        await self._send(
            sid, "response", self._response(account, instance, data, specification=spec)
        )

    # -- account events ----------------------------------------------------------------------
    async def end_account(self, account: ProvisionedAccount, reason: str) -> None:
        """The account left the broker (undeployed, deleted, refused): tell its subscribers, end them."""
        now = self.clock()
        for record in self.subscriptions.open_for_account(account.id):
            packet = self._packet(account, record.instance_index, "disconnected")
            await self._send(record.socket_id, "synchronization", packet)
            self.subscriptions.end(
                socket_id=record.socket_id,
                account_id=account.id,
                instance_index=record.instance_index,
                reason=reason,
                now=now,
            )

    # -- background loops ----------------------------------------------------------------------
    async def status_loop(self) -> None:
        """`status` heartbeats for every open subscription (the SDK drops an instance after 60 s of silence)."""
        while True:
            await asyncio.sleep(self.settings.status_seconds)
            sends = [
                self._send(r.socket_id, "synchronization", self._status(account, r.instance_index))
                for account in list(self.accounts.values())
                for r in self.subscriptions.open_for_account(account.id)
            ]
            await asyncio.gather(*sends)

    async def tick_loop(self) -> None:
        """Move prices, stream them to market-data subscribers, and let the strategy trade."""
        while True:
            await asyncio.sleep(self.settings.tick_seconds)
            for symbol in INSTRUMENTS:
                self.market.tick(symbol)
            sends = []
            for socket in list(self.sockets.values()):
                for (account_id, instance), symbols in socket.market_data.items():
                    account = self.accounts.get(account_id)
                    if account is None:
                        continue
                    held = symbols | {p.symbol for p in account.broker.positions.values()}
                    if held:
                        sends.append(
                            self._send(
                                socket.sid,
                                "synchronization",
                                self._prices(account, instance, sorted(held)),
                            )
                        )
            await asyncio.gather(*sends)
            if self.settings.strategy_seconds:
                await self._strategy_step()

    async def _strategy_step(self) -> None:
        chance = self.settings.tick_seconds / self.settings.strategy_seconds
        for account in list(self.accounts.values()):
            if not account.streamable or not self.subscriptions.open_for_account(account.id):
                continue
            if self._strategy_rng.random() >= chance:
                continue
            broker = account.broker
            if broker.positions and self._strategy_rng.random() < 0.5:
                request: Json = {
                    "actionType": "POSITION_CLOSE_ID",
                    "positionId": self._strategy_rng.choice(sorted(broker.positions)),
                }
            else:
                request = {
                    "actionType": self._strategy_rng.choice(["ORDER_TYPE_BUY", "ORDER_TYPE_SELL"]),
                    "symbol": self._strategy_rng.choice(sorted(INSTRUMENTS)),
                    "volume": 0.1,
                    "magic": 7,
                    "comment": "simulated strategy",
                }
            result = broker.trade(request, self.market, self.clock())
            if result.update is not None:
                await self.broadcast_update(account, result.update)


def utc_now() -> datetime:
    """The simulator's clock."""
    return datetime.now(UTC)
