"""Accounts, trades, bots, providers and signals: ownership, pagination, caching and bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from algoedge.cache import listing_key
from algoedge.config import ApiSettings
from algoedge.credentials import CredentialsCipher
from algoedge.db import Database, accounts, marketplace, trades
from redis.asyncio import Redis

from tests.integration.conftest import ApiClient

ACCOUNT = {
    "login": "40001234",
    "server": "Broker-Demo",
    "password": "mt5-secret-pw",
    "platform": "mt5",
}


@pytest.fixture
async def app_db(relaxed_settings: ApiSettings) -> AsyncIterator[Database]:
    database = await Database.connect(relaxed_settings)
    yield database
    await database.close()


async def link(api: ApiClient, token: str, **changes: object) -> dict[str, Any]:
    status, body, _ = await api.call(
        "POST", "/api/v1/accounts", token=token, json={**ACCOUNT, **changes}
    )
    assert status == 201, body
    return dict(body)


class TestAccounts:
    async def test_should_link_without_ever_returning_the_password(
        self, api: ApiClient, app_db: Database, relaxed_settings: ApiSettings
    ) -> None:
        user_id, token = await api.signed_up()
        status, body, response = await api.call(
            "POST", "/api/v1/accounts", token=token, json=ACCOUNT
        )
        assert status == 201
        assert response.headers["Location"] == f"/api/v1/accounts/{body['id']}"
        assert body["user_id"] == user_id
        assert body["connection"]["state"] == "pending"
        assert "password" not in str(body)
        stored = await accounts.read_encrypted_password(app_db, int(body["id"]))
        assert b"mt5-secret-pw" not in stored
        cipher = CredentialsCipher(relaxed_settings.credentials_key.get_secret_value())
        assert cipher.decrypt(stored) == "mt5-secret-pw"

    async def test_should_accept_a_numeric_login(self, api: ApiClient) -> None:
        _, token = await api.signed_up()
        assert (await link(api, token, login=7001))["login"] == "7001"

    async def test_should_refuse_a_second_link_of_the_same_account(self, api: ApiClient) -> None:
        _, token = await api.signed_up()
        await link(api, token)
        status, body, _ = await api.call("POST", "/api/v1/accounts", token=token, json=ACCOUNT)
        assert status == 409
        assert "already linked" in body["detail"]

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"login": "abc"}, "login"),
            ({"login": ""}, "login"),
            ({"platform": "mt6"}, "platform"),
            ({"server": ""}, "server"),
            ({"password": None}, "password"),
            ({"broker": "x"}, "broker"),
        ],
    )
    async def test_should_name_the_invalid_field(
        self, api: ApiClient, changes: dict[str, object], field: str
    ) -> None:
        _, token = await api.signed_up()
        status, body, _ = await api.call(
            "POST", "/api/v1/accounts", token=token, json={**ACCOUNT, **changes}
        )
        assert status == 422
        assert field in {e["field"] for e in body["errors"]}

    async def test_should_page_through_my_accounts_only(self, api: ApiClient) -> None:
        _, token = await api.signed_up()
        _, other = await api.signed_up()
        mine = [await link(api, token, login=str(1000 + i)) for i in range(5)]
        await link(api, other, login="999")
        seen, cursor = [], None
        while True:
            query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
            status, body, _ = await api.call("GET", f"/api/v1/accounts{query}", token=token)
            assert status == 200
            seen += [a["id"] for a in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == [a["id"] for a in mine]

    async def test_should_hide_another_users_account_as_not_found(self, api: ApiClient) -> None:
        _, owner = await api.signed_up()
        _, intruder = await api.signed_up()
        account_id = (await link(api, owner))["id"]
        for method in ("GET", "DELETE"):
            status, _, _ = await api.call(method, f"/api/v1/accounts/{account_id}", token=intruder)
            assert status == 404
        status, _, _ = await api.call(
            "GET", f"/api/v1/trades?account_id={account_id}", token=intruder
        )
        assert status == 404
        assert (await api.call("GET", f"/api/v1/accounts/{account_id}", token=owner))[0] == 200

    async def test_should_unlink(self, api: ApiClient) -> None:
        _, token = await api.signed_up()
        account_id = (await link(api, token))["id"]
        assert (await api.call("DELETE", f"/api/v1/accounts/{account_id}", token=token))[0] == 204
        assert (await api.call("GET", f"/api/v1/accounts/{account_id}", token=token))[0] == 404
        assert (await api.call("DELETE", f"/api/v1/accounts/{account_id}", token=token))[0] == 404

    @pytest.mark.parametrize("bad", ["abc", "-1", "99999999999999999999999", "1.5"])
    async def test_should_answer_404_to_a_malformed_id(self, api: ApiClient, bad: str) -> None:
        _, token = await api.signed_up()
        assert (await api.call("GET", f"/api/v1/accounts/{bad}", token=token))[0] == 404


class TestTrades:
    async def test_should_page_newest_first_without_gaps_or_repeats(
        self, api: ApiClient, app_db: Database
    ) -> None:
        _, token = await api.signed_up()
        account_id = int((await link(api, token))["id"])
        opened = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(25):
            await trades.record_trade(
                app_db,
                account_id=account_id,
                symbol="EURUSD",
                side="buy" if i % 2 else "sell",
                volume=Decimal("0.10"),
                open_price=Decimal("1.08500"),
                opened_at=opened + timedelta(minutes=i),
            )
        ids, cursor = [], None
        while True:
            query = f"?limit=10&cursor={cursor}" if cursor else "?limit=10"
            status, body, _ = await api.call("GET", f"/api/v1/trades{query}", token=token)
            assert status == 200
            ids += [t["id"] for t in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(ids) == 25
        assert ids == sorted(ids, reverse=True)  # same created_at order as ids here
        first = (await api.call("GET", "/api/v1/trades?limit=1", token=token))[1]["items"][0]
        assert first["volume"] == "0.10"
        assert first["open_price"] == "1.08500000"

    async def test_should_filter_by_account_and_time(
        self, api: ApiClient, app_db: Database
    ) -> None:
        _, token = await api.signed_up()
        first = int((await link(api, token, login="1"))["id"])
        second = int((await link(api, token, login="2"))["id"])
        for account_id in (first, first, second):
            await trades.record_trade(
                app_db,
                account_id=account_id,
                symbol="XAUUSD",
                side="buy",
                volume=Decimal(1),
                open_price=Decimal(2000),
                opened_at=datetime.now(UTC),
            )
        body = (await api.call("GET", f"/api/v1/trades?account_id={second}", token=token))[1]
        assert [t["account_id"] for t in body["items"]] == [second]
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        body = (await api.call("GET", "/api/v1/trades", token=token, params={"since": future}))[1]
        assert body["items"] == []

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ({"limit": "0"}, "limit"),
            ({"limit": "101"}, "limit"),
            ({"cursor": "not-a-cursor"}, "cursor"),
            ({"since": "2026-01-01T00:00:00"}, "since"),  # no time zone
            ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
            ({"account_id": "x"}, "account_id"),
            ({"colour": "red"}, "colour"),
        ],
    )
    async def test_should_name_the_invalid_parameter(
        self, api: ApiClient, query: dict[str, str], field: str
    ) -> None:
        _, token = await api.signed_up()
        status, body, _ = await api.call("GET", "/api/v1/trades", token=token, params=query)
        assert status == 422
        assert field in {e["field"] for e in body["errors"]}


class TestMarketplace:
    async def test_should_list_active_bots_from_the_redis_cache(
        self, api: ApiClient, app_db: Database, relaxed_settings: ApiSettings
    ) -> None:
        active = await marketplace.create_bot(
            app_db, name="Trend Rider", monthly_price=Decimal("29.90")
        )
        await marketplace.create_bot(app_db, name="Old", status="retired")
        status, body, _ = await api.call("GET", "/api/v1/bots?status=active")
        assert status == 200
        assert [b["id"] for b in body["items"]] == [active.id]
        assert body["items"][0]["monthly_price"] == "29.90"
        redis = Redis.from_url(relaxed_settings.redis_url)
        assert await redis.exists(listing_key("bots:active:0:20")) == 1
        await redis.aclose()
        # A bot added now shows up only after the cache entry expires (bounded staleness).
        await marketplace.create_bot(app_db, name="New")
        assert len((await api.call("GET", "/api/v1/bots?status=active"))[1]["items"]) == 1

    async def test_should_subscribe_once_and_only_to_active_bots(
        self, api: ApiClient, app_db: Database
    ) -> None:
        _, token = await api.signed_up()
        _, other = await api.signed_up()
        bot = await marketplace.create_bot(app_db, name="Scalper")
        paused = await marketplace.create_bot(app_db, name="Paused", status="paused")
        path = f"/api/v1/bots/{bot.id}/subscribe"
        assert (await api.call("POST", path, token=token))[0] == 201
        assert (await api.call("POST", path, token=token))[0] == 200
        assert (await api.call("POST", f"/api/v1/bots/{paused.id}/subscribe", token=token))[
            0
        ] == 404
        assert (await api.call("POST", "/api/v1/bots/999999/subscribe", token=token))[0] == 404
        theirs = (await link(api, other))["id"]
        status, _, _ = await api.call("POST", path, token=other, json={"account_id": theirs})
        assert status == 201
        _, third = await api.signed_up()
        status, _, _ = await api.call("POST", path, token=third, json={"account_id": theirs})
        assert status == 404
        assert (await api.call("GET", f"/api/v1/bots/{bot.id}"))[1]["name"] == "Scalper"
        assert (await api.call("GET", "/api/v1/bots/424242"))[0] == 404

    async def test_should_follow_providers_and_read_their_signals(
        self, api: ApiClient, app_db: Database
    ) -> None:
        _, token = await api.signed_up()
        followed = await marketplace.create_provider(app_db, name="FX Pro")
        other = await marketplace.create_provider(app_db, name="Other")
        for provider in (followed, other):
            await marketplace.publish_signal(
                app_db,
                provider_id=provider.id,
                symbol="GBPUSD",
                side="sell",
                entry_price=Decimal("1.27"),
            )
        assert [p["name"] for p in (await api.call("GET", "/api/v1/providers"))[1]["items"]] == [
            "FX Pro",
            "Other",
        ]
        path = f"/api/v1/providers/{followed.id}/follow"
        assert (await api.call("POST", path, token=token))[0] == 201
        assert (await api.call("POST", path, token=token))[0] == 200
        assert (await api.call("POST", "/api/v1/providers/777777/follow", token=token))[0] == 404
        feed = (await api.call("GET", "/api/v1/signals", token=token))[1]["items"]
        assert [s["provider_id"] for s in feed] == [followed.id]
        one = (await api.call("GET", f"/api/v1/signals?provider_id={other.id}", token=token))[1]
        assert [s["provider_id"] for s in one["items"]] == [other.id]
        assert (await api.call("GET", "/api/v1/signals?provider_id=777777", token=token))[0] == 404
        assert (await api.call("GET", "/api/v1/signals"))[0] == 401


@pytest.mark.parametrize(
    "since",
    ["0210-04-26T23:55:25-19:39", "0001-01-01T00:00:00+10:00", "9999-12-31T23:59:59-23:59"],
)
async def test_should_accept_or_refuse_odd_but_valid_timestamps_without_a_500(
    api: ApiClient, since: str
) -> None:
    _, token = await api.signed_up()
    status, _, _ = await api.call("GET", "/api/v1/trades", token=token, params={"since": since})
    assert status in (200, 422)
