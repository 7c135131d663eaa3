"""500 accounts through one SDK instance: at most 100 accounts per socket, and every one synchronizes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.bridge.conftest import NEW_ACCOUNT, RunningSim, eventually

ACCOUNTS = 500
#: metaapi-cloud-sdk 29.x's `_max_accounts_per_instance`: one socket carries at most this many.
PER_SOCKET = 100


@pytest.mark.timeout(120)
async def test_should_synchronize_500_accounts_over_sockets_of_at_most_100(
    simulator: RunningSim, sdk_factory: Any
) -> None:
    provisioning = simulator.sim.provisioning
    # Provisioning through REST is covered elsewhere; here the accounts are made in process.
    ids = [
        provisioning.create({**NEW_ACCOUNT, "login": str(60000000 + n)}, None).id
        for n in range(ACCOUNTS)
    ]
    for account_id in ids:
        provisioning.deploy(account_id)
    await eventually(
        lambda: all(provisioning.accounts[a].streamable for a in ids), within=10, what="deploys"
    )

    api = sdk_factory()
    started = time.monotonic()
    limit = asyncio.Semaphore(50)

    async def synchronize(account_id: str) -> Any:
        async with limit:
            account = await api.metatrader_account_api.get_account(account_id)
        connection = account.get_streaming_connection()
        await connection.connect()
        await connection.wait_synchronized({"timeoutInSeconds": 120})
        return connection

    connections = await asyncio.gather(*(synchronize(a) for a in ids))
    elapsed = time.monotonic() - started
    print(f"\n{ACCOUNTS} accounts synchronized through one SDK instance in {elapsed:.1f} s")

    assert len(connections) == ACCOUNTS
    assert all(c.terminal_state.account_information["balance"] == 10000.0 for c in connections)
    log = simulator.sim.subscriptions
    synchronized = {r.account_id for r in log.records if r.synchronizations >= 1}
    assert synchronized == set(ids)
    sockets = log.per_socket()
    assert max(s["maxOpen"] for s in sockets) <= PER_SOCKET
    assert sum(1 for s in sockets if s["instanceIndexes"] == [0]) >= ACCOUNTS // PER_SOCKET
    # No account was ever held twice on one instance index.
    assert all(log.max_open(a)["perInstanceIndex"] == {"0": 1} for a in ids)

    # Close as an SDK user does, so that 500 closes do not race the simulator's shutdown.
    await asyncio.gather(*(c.close() for c in connections))
    await eventually(
        lambda: all(not log.open_for_account(a) for a in ids), within=30, what="the unsubscribes"
    )
