"""The real metaapi-cloud-sdk runs MetaAPI's documented account lifecycle against the simulator."""

from __future__ import annotations

import asyncio
from typing import Any

from algoedge.bridge.sdk import point_sdk_at
from algoedge.metaapi_sim.settings import load_sim_settings

from tests.bridge.conftest import (
    FAST,
    NEW_ACCOUNT,
    TOKEN,
    RunningSim,
    connected_account,
    eventually,
    start_sim,
)


async def test_should_run_the_sdk_lifecycle_from_create_to_delete(
    simulator: RunningSim, sdk_factory: Any
) -> None:
    from metaapi_cloud_sdk.clients.error_handler import NotFoundException

    api = sdk_factory()
    account = await api.metatrader_account_api.create_account(dict(NEW_ACCOUNT))
    assert account.state == "CREATED"
    await account.deploy()
    await account.wait_deployed(timeout_in_seconds=10, interval_in_milliseconds=200)
    await account.wait_connected(timeout_in_seconds=10, interval_in_milliseconds=200)
    assert (account.state, account.connection_status) == ("DEPLOYED", "CONNECTED")

    connection = account.get_streaming_connection()
    await connection.connect()
    await connection.wait_synchronized({"timeoutInSeconds": 30})
    terminal = connection.terminal_state
    assert terminal.account_information["balance"] == 10000.0
    assert terminal.positions == []
    assert terminal.specification("EURUSD")["contractSize"] == 100000

    opened = await connection.create_market_buy_order("EURUSD", 0.1)
    assert opened["stringCode"] == "TRADE_RETCODE_DONE"
    position_id = opened["positionId"]
    await eventually(
        lambda: [p["id"] for p in terminal.positions] == [position_id],
        within=5,
        what="the position in the SDK's terminal state",
    )
    history = connection.history_storage
    await eventually(
        lambda: any(d.get("entryType") == "DEAL_ENTRY_IN" for d in history.deals),
        within=5,
        what="the DEAL_ENTRY_IN deal in the SDK's history",
    )
    entry = next(d for d in history.deals if d.get("entryType") == "DEAL_ENTRY_IN")
    assert (entry["positionId"], entry["type"], entry["volume"]) == (
        position_id,
        "DEAL_TYPE_BUY",
        0.1,
    )

    # Let the random walk move the price so the close has a profit (or loss) to book.
    for _ in range(5):
        simulator.sim.streaming.market.tick("EURUSD")
    closed = await connection.close_position(position_id)
    assert closed["stringCode"] == "TRADE_RETCODE_DONE"
    await eventually(lambda: terminal.positions == [], within=5, what="the position to close")
    await eventually(
        lambda: any(d.get("entryType") == "DEAL_ENTRY_OUT" for d in history.deals),
        within=5,
        what="the DEAL_ENTRY_OUT deal",
    )
    exit_deal = next(d for d in history.deals if d.get("entryType") == "DEAL_ENTRY_OUT")
    assert exit_deal["positionId"] == position_id
    assert exit_deal["profit"] != 0
    await eventually(
        lambda: terminal.account_information["balance"] == round(10000.0 + exit_deal["profit"], 2),
        within=5,
        what="the balance to include the profit",
    )

    await connection.close()
    await account.undeploy()
    await account.wait_undeployed(timeout_in_seconds=10, interval_in_milliseconds=200)
    await account.remove()
    await account.wait_removed(timeout_in_seconds=10, interval_in_milliseconds=200)
    assert simulator.sim.provisioning.accounts == {}
    try:
        await account.reload()
    except NotFoundException:
        pass
    else:
        raise AssertionError("the deleted account still loads")


async def test_should_stream_trades_of_the_simulated_strategy(
    tmp_path: Any, monkeypatch: Any
) -> None:
    from metaapi_cloud_sdk import MetaApi

    monkeypatch.chdir(tmp_path)
    settings = load_sim_settings({**FAST, "ALGOEDGE_SIM_STRATEGY_SECONDS": "0.2"})
    runner, running = await start_sim(settings)
    api = MetaApi(TOKEN, {"application": "AlgoEdgeTests", "requestTimeout": 20})
    point_sdk_at(api, running.url)
    try:
        _, connection = await connected_account(api)
        # Nobody trades through the SDK: the deals come from the simulator's strategy.
        await eventually(
            lambda: sum(1 for d in connection.history_storage.deals if d.get("magic") == 7) >= 3,
            within=15,
            what="three strategy deals in the SDK's history",
        )
        deal_ids = {d["id"] for d in connection.history_storage.deals}
        broker = next(iter(running.sim.provisioning.accounts.values())).broker
        assert deal_ids <= {d["id"] for d in broker.deals}
    finally:
        api.close()
        await asyncio.sleep(0.2)
        await runner.cleanup()
