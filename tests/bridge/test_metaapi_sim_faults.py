"""Faults injected through /admin reach the real SDK as MetaAPI's would; the subscription log sees it all."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.bridge.conftest import NEW_ACCOUNT, RunningSim, connected_account, eventually, fetch


async def test_should_resynchronize_by_itself_after_every_socket_is_dropped(
    simulator: RunningSim, sdk_factory: Any
) -> None:
    # Reliability "high": both instance indexes host the account, and both must come back.
    account, connection = await connected_account(sdk_factory(), reliability="high")
    log = simulator.sim.subscriptions
    await eventually(
        lambda: len(log.open_for_account(account.id)) == 2, within=5, what="both instances"
    )
    before = {r.socket_id for r in log.open_for_account(account.id)}
    syncs_before = len(connection._websocket_client._synchronization_id_by_instance)

    dropped = await simulator.admin("POST", "/admin/faults/drop-sockets")
    assert dropped.status_code == 200
    assert dropped.json()["dropped"] >= 2
    assert log.open_for_account(account.id) == []

    await eventually(
        lambda: (
            sorted((r.instance_index, r.synchronizations) for r in log.open_for_account(account.id))
            == [(0, 1), (1, 1)]
        ),
        within=20,
        what="the SDK to subscribe and synchronize again on both instances",
    )
    after = {r.socket_id for r in log.open_for_account(account.id)}
    assert not after & before
    await connection.wait_synchronized({"timeoutInSeconds": 20})
    assert syncs_before >= 1
    # The new sockets carry trades again.
    opened = await connection.create_market_sell_order("GBPUSD", 0.2)
    await eventually(
        lambda: [p["id"] for p in connection.terminal_state.positions] == [opened["positionId"]],
        within=5,
        what="the position after the reconnect",
    )
    stats = (await simulator.admin("GET", "/admin/stats")).json()
    mine = next(a for a in stats["accounts"] if a["accountId"] == account.id)
    # Never two holders of one instance at once, across the storm.
    assert mine["perInstanceIndex"] == {"0": 1, "1": 1}


async def test_should_reach_the_sdk_as_too_many_requests_with_the_retry_time(
    simulator: RunningSim, sdk_factory: Any
) -> None:
    from metaapi_cloud_sdk.clients.error_handler import TooManyRequestsException

    _, connection = await connected_account(sdk_factory())
    answer = await simulator.admin(
        "PUT", "/admin/faults/too-many-requests", {"fraction": 1, "retryAfterSeconds": 30}
    )
    assert answer.status_code == 200
    with pytest.raises(TooManyRequestsException) as caught:
        await connection.create_market_buy_order("EURUSD", 0.1)
    retry_at = caught.value.metadata["recommendedRetryTime"]
    retry_at = retry_at if isinstance(retry_at, datetime) else datetime.fromisoformat(retry_at)
    assert 25 < (retry_at - datetime.now(UTC)).total_seconds() <= 30

    # REST answers 429 too, with the same body shape the SDK parses.
    rest = await simulator.rest("GET", "/users/current/accounts")
    assert rest.status_code == 429
    assert rest.json()["error"] == "TooManyRequestsError"
    assert "recommendedRetryTime" in rest.json()["metadata"]

    # The SDK's REST client sleeps until the recommended time and retries by itself.
    await simulator.admin(
        "PUT", "/admin/faults/too-many-requests", {"fraction": 1, "retryAfterSeconds": 1}
    )
    api = sdk_factory()
    started = time.monotonic()
    load = asyncio.create_task(
        api.metatrader_account_api.get_accounts_with_infinite_scroll_pagination()
    )
    await asyncio.sleep(0.3)
    assert (await simulator.admin("DELETE", "/admin/faults")).status_code == 200
    await load
    assert time.monotonic() - started >= 0.9


async def test_should_refuse_credentials_and_servers_with_metaapis_codes(
    simulator: RunningSim, sdk_factory: Any
) -> None:
    from metaapi_cloud_sdk.clients.error_handler import ValidationException

    api = sdk_factory()
    account = await api.metatrader_account_api.create_account(dict(NEW_ACCOUNT))
    refused = await simulator.admin(
        "POST", "/admin/faults/refuse", {"accountId": account.id, "reason": "E_AUTH"}
    )
    assert refused.status_code == 200
    with pytest.raises(ValidationException) as caught:
        await account.deploy()
    assert caught.value.details == "E_AUTH"

    await simulator.admin(
        "POST", "/admin/faults/refuse", {"server": "Gone-Server", "reason": "E_SRV_NOT_FOUND"}
    )
    with pytest.raises(ValidationException) as caught:
        await api.metatrader_account_api.create_account({**NEW_ACCOUNT, "server": "Gone-Server"})
    assert caught.value.details == "E_SRV_NOT_FOUND"


async def test_should_disconnect_a_connected_account_whose_credentials_are_refused(
    simulator: RunningSim, sdk_factory: Any
) -> None:
    account, connection = await connected_account(sdk_factory())
    await simulator.admin("POST", "/admin/faults/refuse", {"accountId": account.id})
    await account.reload()
    assert account.connection_status == "DISCONNECTED_FROM_BROKER"
    assert simulator.sim.subscriptions.open_for_account(account.id) == []
    await eventually(
        lambda: not connection.health_monitor.health_status["connectedToBroker"],
        within=5,
        what="the SDK to see the broker connection lost",
    )


async def test_should_add_latency_and_stall_sockets(
    simulator: RunningSim, sdk_factory: Any
) -> None:
    from metaapi_cloud_sdk.clients.timeout_exception import TimeoutException

    account, connection = await connected_account(sdk_factory(requestTimeout=1))
    await simulator.admin("PUT", "/admin/faults/latency", {"ms": 300})
    started = time.monotonic()
    await account.reload()
    assert time.monotonic() - started >= 0.3
    await simulator.admin("PUT", "/admin/faults/latency", {"ms": 0})

    stalled = await simulator.admin("POST", "/admin/faults/stall", {"accountId": account.id})
    # Reliability "regular": one instance index, so one socket holds the account.
    assert len(stalled.json()["stalled"]) == 1
    with pytest.raises(TimeoutException):
        await connection.create_market_buy_order("EURUSD", 0.1)
    assert account.id in simulator.sim.provisioning.accounts
    assert simulator.sim.provisioning.accounts[account.id].broker.positions == {}


class TestAdmin:
    async def test_should_require_the_admin_token(self, simulator: RunningSim) -> None:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer = await fetch(
                "POST", f"{simulator.url}/admin/faults/drop-sockets", headers=headers
            )
            assert answer.status_code == 401
            assert answer.json()["error"] == "UnauthorizedError"

    @pytest.mark.parametrize(
        ("method", "path", "body", "parameter"),
        [
            ("PUT", "/admin/faults/too-many-requests", {"fraction": 2}, "fraction"),
            ("PUT", "/admin/faults/too-many-requests", {"fraction": "half"}, "fraction"),
            ("PUT", "/admin/faults/latency", {"ms": -5}, "ms"),
            ("POST", "/admin/faults/refuse", {"reason": "E_OTHER"}, None),
            ("POST", "/admin/faults/refuse", {"reason": "E_AUTH"}, None),
            ("POST", "/admin/faults/stall", {}, None),
            ("PUT", "/admin/faults/latency", [1], None),
        ],
    )
    async def test_should_answer_bad_admin_input_with_validation_errors(
        self, simulator: RunningSim, method: str, path: str, body: Any, parameter: str | None
    ) -> None:
        answer = await simulator.admin(method, path, body)
        assert answer.status_code == 400
        error = answer.json()
        assert error["error"] == "ValidationError"
        if parameter:
            assert error["details"][0]["parameter"] == parameter
        assert (await simulator.admin("GET", "/admin/faults")).json()["latencyMs"] == 0

    async def test_should_answer_an_unknown_account_with_not_found(
        self, simulator: RunningSim
    ) -> None:
        answer = await simulator.admin("POST", "/admin/faults/refuse", {"accountId": "nope"})
        assert (answer.status_code, answer.json()["error"]) == (404, "NotFoundError")

    async def test_should_log_who_held_each_subscription(
        self, simulator: RunningSim, sdk_factory: Any
    ) -> None:
        # Reliability "high": instance indexes 0 and 1 both host it, each on its own socket.
        account, connection = await connected_account(sdk_factory(), reliability="high")
        await eventually(
            lambda: len(simulator.sim.subscriptions.open_for_account(account.id)) == 2,
            within=5,
            what="both instance subscriptions",
        )
        await connection.close()
        await eventually(
            lambda: simulator.sim.subscriptions.open_for_account(account.id) == [],
            within=5,
            what="the unsubscribe",
        )
        records = (
            await simulator.admin("GET", f"/admin/subscriptions?accountId={account.id}")
        ).json()
        assert sorted(r["instanceIndex"] for r in records) == [0, 1]
        assert all(
            r["clientId"] and r["ended"] and r["endReason"] == "unsubscribed" for r in records
        )
        stats = (await simulator.admin("GET", "/admin/stats")).json()
        assert stats["accounts"] == [
            {
                "accountId": account.id,
                "subscriptions": 2,
                "perInstanceIndex": {"0": 1, "1": 1},
                "clients": 2,
            }
        ]
        assert sorted(s["maxOpen"] for s in stats["sockets"]) == [1, 1]
