"""The API's side of the MetaAPI bridge: an account's connection as users see it, editing its
credentials (how a failed account is tried again), MetaAPI accounts queued for removal, and the
wake-up the bridge gets on every link, edit and unlink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from algoedge.config import ApiSettings
from algoedge.credentials import CredentialsCipher
from algoedge.db import Database, accounts
from algoedge.keys import BRIDGE_WAKE_CHANNEL
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from tests.integration.conftest import ApiClient, running_api
from tests.integration.sockets import Listener
from tests.integration.test_api_resources import ACCOUNT, link


async def record_failure(db: Database, account_id: int, *, since: datetime, error: str) -> None:
    """What a bridge writes when MetaAPI refuses an account's credentials."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE mt_accounts SET state = 'failed', state_since = %s, last_error = %s "
            "WHERE id = %s",
            (since, error, account_id),
        )


async def record_metaapi_id(db: Database, account_id: int, metaapi_account_id: str) -> None:
    """What a bridge writes once it made the account's MetaAPI account."""
    async with db.cursor() as cur:
        await cur.execute(
            "UPDATE mt_accounts SET metaapi_account_id = %s WHERE id = %s",
            (metaapi_account_id, account_id),
        )


async def row_of(db: Database, account_id: int) -> dict[str, Any]:
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT server, state, last_error, credentials_version, metaapi_account_id "
            "FROM mt_accounts WHERE id = %s",
            (account_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(zip(("server", "state", "last_error", "version", "metaapi_id"), row, strict=True))


async def removals(db: Database) -> list[str]:
    async with db.cursor() as cur:
        await cur.execute("SELECT metaapi_account_id FROM metaapi_removals ORDER BY 1")
        return [row[0] for row in await cur.fetchall()]


async def edit(api: ApiClient, token: str, account_id: int, **body: object) -> tuple[int, Any]:
    status, answer, _ = await api.call(
        "PATCH", f"/api/v1/accounts/{account_id}", token=token, json=body
    )
    return status, answer


@pytest.fixture
async def wake(relaxed_settings: ApiSettings) -> AsyncIterator[PubSub]:
    """A subscription to the bridge's wake channel, confirmed before the test sends anything."""
    redis = Redis.from_url(relaxed_settings.redis_url, decode_responses=True)
    pubsub = redis.pubsub()
    await pubsub.subscribe(BRIDGE_WAKE_CHANNEL)
    confirmation = await pubsub.get_message(timeout=5)
    assert confirmation is not None
    assert confirmation["type"] == "subscribe"
    yield pubsub
    await pubsub.aclose()
    await redis.aclose()


async def woken_for(pubsub: PubSub, count: int) -> list[str]:
    """The next ``count`` wake messages (account ids), waiting up to 5 s for each."""
    received: list[str] = []
    for _ in range(count):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None, f"only {received} arrived"
        received.append(message["data"])
    return received


class TestConnection:
    async def test_should_show_the_state_the_bridge_recorded(
        self, api: ApiClient, db: Database
    ) -> None:
        _, token = await api.signed_up()
        linked = await link(api, token)
        assert "state" not in linked
        assert linked["connection"]["state"] == "pending"
        assert linked["connection"]["last_error"] is None
        since = datetime.fromisoformat(linked["connection"]["since"])
        assert abs(datetime.now(UTC) - since) < timedelta(minutes=1)

        failed_at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
        await record_failure(
            db, linked["id"], since=failed_at, error="E_AUTH: invalid account credentials"
        )
        status, one, _ = await api.call("GET", f"/api/v1/accounts/{linked['id']}", token=token)
        assert status == 200
        assert one["connection"]["state"] == "failed"
        assert datetime.fromisoformat(one["connection"]["since"]) == failed_at
        assert one["connection"]["last_error"] == "E_AUTH: invalid account credentials"
        _, listed, _ = await api.call("GET", "/api/v1/accounts", token=token)
        assert [a["connection"] for a in listed["items"]] == [one["connection"]]


#: PATCH bodies the API refuses, and the field each one's problem names.
BAD_EDITS: list[tuple[dict[str, object], str]] = [
    ({}, "body"),
    ({"server": ""}, "server"),
    ({"server": " Broker-Demo"}, "server"),
    ({"server": "B" * 129}, "server"),
    ({"server": None}, "server"),
    ({"password": ""}, "password"),
    ({"password": "pass\x00word"}, "password"),
    ({"password": None}, "password"),
    ({"password": "pw", "login": "40009999"}, "login"),
    ({"password": "pw", "platform": "mt4"}, "platform"),
]


class TestEdit:
    async def test_should_start_the_connection_over_with_new_credentials(
        self, api: ApiClient, db: Database, relaxed_settings: ApiSettings
    ) -> None:
        _, token = await api.signed_up()
        account_id = int((await link(api, token))["id"])
        failed_at = datetime.now(UTC) - timedelta(hours=1)
        await record_failure(
            db, account_id, since=failed_at, error="E_AUTH: invalid account credentials"
        )
        await record_metaapi_id(db, account_id, "metaapi-old")

        status, body = await edit(api, token, account_id, password="the-right-one")
        assert status == 200, body
        assert body["id"] == account_id
        assert body["server"] == ACCOUNT["server"]
        assert body["connection"]["state"] == "pending"
        assert body["connection"]["last_error"] is None
        assert datetime.fromisoformat(body["connection"]["since"]) > failed_at
        assert await row_of(db, account_id) == {
            "server": ACCOUNT["server"],
            "state": "pending",
            "last_error": None,
            "version": 2,
            "metaapi_id": None,
        }
        # The MetaAPI account made for the old password is the bridge's to remove.
        assert await removals(db) == ["metaapi-old"]
        cipher = CredentialsCipher(relaxed_settings.credentials_key.get_secret_value())
        stored = await accounts.read_encrypted_password(db, account_id)
        assert cipher.decrypt(stored) == "the-right-one"

        status, body = await edit(api, token, account_id, server="Broker-Live")
        assert (status, body["server"]) == (200, "Broker-Live")
        assert (await row_of(db, account_id))["version"] == 3
        assert cipher.decrypt(await accounts.read_encrypted_password(db, account_id)) == (
            "the-right-one"
        )
        assert await removals(db) == ["metaapi-old"]  # no MetaAPI account since the last edit

    async def test_should_name_the_invalid_field_and_change_nothing(
        self, api: ApiClient, db: Database
    ) -> None:
        # One test for all cases: each test's database keeps Postgres connections open in
        # pgBouncer for minutes, and the whole suite shares one Postgres.
        _, token = await api.signed_up()
        account_id = int((await link(api, token))["id"])
        for body, field in BAD_EDITS:
            status, answer = await edit(api, token, account_id, **body)
            assert status == 422, (body, answer)
            assert field in {e["field"] for e in answer["errors"]}, (body, answer)
        assert (await row_of(db, account_id))["version"] == 1

    async def test_should_answer_404_for_an_account_that_is_not_mine(
        self, api: ApiClient, db: Database
    ) -> None:
        _, owner = await api.signed_up()
        _, intruder = await api.signed_up()
        account_id = int((await link(api, owner))["id"])
        await record_metaapi_id(db, account_id, "metaapi-owner")
        assert (await edit(api, intruder, account_id, password="mine now"))[0] == 404
        assert (await edit(api, owner, account_id + 1000, password="pw"))[0] == 404
        assert (await row_of(db, account_id))["version"] == 1
        assert await removals(db) == []

    async def test_should_refuse_a_server_the_same_login_is_linked_on(
        self, api: ApiClient, db: Database
    ) -> None:
        _, token = await api.signed_up()
        await link(api, token, server="Broker-Demo")
        account_id = int((await link(api, token, server="Broker-Live"))["id"])
        await record_metaapi_id(db, account_id, "metaapi-live")
        status, body = await edit(api, token, account_id, server="Broker-Demo", password="pw")
        assert status == 409
        assert "already linked" in body["detail"]
        # All or nothing: the account keeps its server, version and MetaAPI account.
        assert await row_of(db, account_id) == {
            "server": "Broker-Live",
            "state": "pending",
            "last_error": None,
            "version": 1,
            "metaapi_id": "metaapi-live",
        }
        assert await removals(db) == []
        # Another user may hold the same login on that server.
        _, other = await api.signed_up()
        other_id = int((await link(api, other, server="Broker-Live"))["id"])
        assert (await edit(api, other, other_id, server="Broker-Demo"))[0] == 200

    async def test_should_tell_the_users_sockets(self, api: ApiClient) -> None:
        _, token = await api.signed_up()
        account_id = int((await link(api, token))["id"])
        listener = Listener()
        await listener.connect(api.base_url, token)
        try:
            status, body = await edit(api, token, account_id, password="new")
            assert status == 200
            assert await listener.wait_for("account.status") == {
                "id": account_id,
                **body["connection"],
            }
        finally:
            await listener.client.disconnect()


class TestUnlink:
    async def test_should_queue_the_metaapi_account_for_removal(
        self, api: ApiClient, db: Database
    ) -> None:
        _, token = await api.signed_up()
        account_id = int((await link(api, token))["id"])
        await record_metaapi_id(db, account_id, "metaapi-gone")
        assert (await api.call("DELETE", f"/api/v1/accounts/{account_id}", token=token))[0] == 204
        assert await removals(db) == ["metaapi-gone"]

    async def test_should_queue_nothing_without_a_metaapi_account(
        self, api: ApiClient, db: Database
    ) -> None:
        _, token = await api.signed_up()
        account_id = int((await link(api, token))["id"])
        assert (await api.call("DELETE", f"/api/v1/accounts/{account_id}", token=token))[0] == 204
        assert await removals(db) == []


async def test_should_wake_the_bridge_on_link_edit_and_unlink(api: ApiClient, wake: PubSub) -> None:
    _, token = await api.signed_up()
    account_id = int((await link(api, token))["id"])
    assert (await edit(api, token, account_id, password="new"))[0] == 200
    assert (await api.call("DELETE", f"/api/v1/accounts/{account_id}", token=token))[0] == 204
    assert await woken_for(wake, 3) == [str(account_id)] * 3
    # Reads and refused changes are no news for the bridge.
    assert (await api.call("GET", f"/api/v1/accounts/{account_id}", token=token))[0] == 404
    assert (await edit(api, token, account_id, password="again"))[0] == 404
    assert await wake.get_message(ignore_subscribe_messages=True, timeout=0.5) is None


class TestAccountsPerUser:
    """``ALGOEDGE_ACCOUNTS_PER_USER``: a user links at most that many accounts (409 beyond)."""

    async def test_should_refuse_one_more_account_than_the_limit_until_one_is_unlinked(
        self, relaxed_settings: ApiSettings
    ) -> None:
        settings = relaxed_settings.model_copy(update={"accounts_per_user": 2})
        async with running_api(settings) as api:
            _, token = await api.signed_up()
            _, other = await api.signed_up()
            first = await link(api, token, login="1001")
            await link(api, token, login="1002")
            status, body, response = await api.call(
                "POST", "/api/v1/accounts", token=token, json={**ACCOUNT, "login": "1003"}
            )
            assert status == 409, body
            assert response.content_type == "application/problem+json"
            assert body["detail"] == (
                "you have 2 linked accounts and at most 2 are allowed; unlink one to link another"
            )
            await link(api, other, login="1003")  # the limit is per user
            status, _, _ = await api.call("DELETE", f"/api/v1/accounts/{first['id']}", token=token)
            assert status == 204
            await link(api, token, login="1003")

    async def test_should_not_let_concurrent_links_pass_the_limit_together(
        self, relaxed_settings: ApiSettings
    ) -> None:
        settings = relaxed_settings.model_copy(update={"accounts_per_user": 3})
        async with running_api(settings) as api:
            _, token = await api.signed_up()
            answers = await asyncio.gather(
                *(
                    api.call(
                        "POST", "/api/v1/accounts", token=token, json={**ACCOUNT, "login": str(n)}
                    )
                    for n in range(2001, 2011)
                )
            )
            assert sorted(status for status, _, _ in answers) == [201] * 3 + [409] * 7
            status, body, _ = await api.call("GET", "/api/v1/accounts", token=token)
            assert status == 200
            assert len(body["items"]) == 3
