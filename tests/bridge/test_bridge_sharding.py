"""Several bridge processes share 300 accounts: all connected, evenly, never twice at once, through
a SIGKILL, a scale-up and a scale-down, and a simulator that drops every socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devtools.bridge import BridgeProcess
from devtools.services import PgBouncer, PostgresServer, RedisServer
from tests.bridge.conftest import RunningSim
from tests.bridge.harness import (
    Deployment,
    leases_held,
    make_deployment,
    metaapi_ids,
    scrape,
    synchronized_now,
)

ACCOUNTS = 300
TTL = 3.0
MAX_SYNCS = 10


@pytest.fixture
async def deployment(
    postgres: PostgresServer,
    pgbouncer: PgBouncer,
    redis_server: RedisServer,
    simulator: RunningSim,
    tmp_path: Path,
) -> AsyncIterator[Deployment]:
    d = await make_deployment(postgres, pgbouncer, redis_server, simulator, tmp_path)
    yield d
    await d.stop_all()
    await d.db.close()


async def wait_all_synchronized(
    d: Deployment, ids: list[int], *, within: float, what: str
) -> float:
    """Seconds until every account has an open, synchronized subscription."""
    started = time.monotonic()
    while True:
        metaapi = await metaapi_ids(d)
        done = synchronized_now(d, metaapi)
        if len(done) == len(ids):
            return time.monotonic() - started
        if time.monotonic() - started > within:
            logs = "\n".join(f"--- {n}\n{b.log()[-2000:]}" for n, b in d.bridges.items())
            pytest.fail(f"{what}: {len(done)}/{len(ids)} synchronized after {within} s\n{logs}")
        await asyncio.sleep(0.5)


async def wait_even(live: list[BridgeProcess], total: int, *, within: float) -> dict[str, int]:
    """Until every live bridge holds its even share within ±20%."""
    even = total / len(live)
    deadline = time.monotonic() + within
    while True:
        held = leases_held(live)
        if sum(held.values()) == total and all(abs(n - even) <= 0.2 * even for n in held.values()):
            return held
        if time.monotonic() > deadline:
            pytest.fail(f"shares not within ±20% of {even:.0f} after {within} s: {held}")
        await asyncio.sleep(0.5)


# Five phases of up to minutes each on a busy 2-core machine; the suite default is 300 s.
@pytest.mark.timeout(600)
async def test_should_share_accounts_evenly_and_never_connect_one_twice(
    deployment: Deployment,
) -> None:
    d = deployment
    ids = await d.seed(ACCOUNTS, users=30)
    bridges = [
        d.start_bridge(f"t-bridge-{n}", lease_ttl=TTL, max_concurrent_syncs=MAX_SYNCS)
        for n in range(3)
    ]
    first = await wait_all_synchronized(d, ids, within=240, what="3 bridges, first connect")
    print(f"\n300 accounts on 3 bridges: all synchronized after {first:.1f} s")
    await d.wait_states(
        lambda s: all(s[i] == "connected" for i in ids), within=30, what="states connected"
    )
    await wait_even(bridges, ACCOUNTS, within=30)
    await d.assert_never_twice()

    # SIGKILL: no release, no unsubscribe; the others wait out the lease TTL and take over.
    victim = bridges.pop(1)
    victim.kill()
    recovered = await wait_all_synchronized(d, ids, within=120, what="after a SIGKILL")
    print(f"SIGKILL of one bridge: all synchronized again after {recovered:.1f} s (TTL {TTL} s)")
    await wait_even(bridges, ACCOUNTS, within=30)
    await d.assert_never_twice()

    # Scale 2 -> 5 (the victim's name reused: a restarted pod).
    bridges.append(d.start_bridge("t-bridge-1", lease_ttl=TTL, max_concurrent_syncs=MAX_SYNCS))
    bridges += [
        d.start_bridge(f"t-bridge-{n}", lease_ttl=TTL, max_concurrent_syncs=MAX_SYNCS)
        for n in (3, 4)
    ]
    shares = await wait_even(bridges, ACCOUNTS, within=120)
    await wait_all_synchronized(d, ids, within=120, what="after scaling to 5")
    print(f"scaled to 5: {shares}")
    await d.assert_never_twice()

    # MetaAPI drops every socket at once: the SDKs reconnect; synchronizations stay bounded.
    dropped = (await d.sim.admin("POST", "/admin/faults/drop-sockets")).json()["dropped"]
    assert dropped > 0
    storm = await wait_all_synchronized(d, ids, within=180, what="after dropping every socket")
    print(f"all sockets dropped ({dropped}): all synchronized again after {storm:.1f} s")
    for bridge in bridges:
        peak = scrape(bridge.url)["algoedge_bridge_syncs_in_flight_max"]
        assert 0 < peak <= MAX_SYNCS, (bridge.name, peak)
    await d.assert_never_twice()
    trades = await d.sql(
        "SELECT account_id, metaapi_position_id, count(*) FROM trades "
        "GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert trades == []


@pytest.mark.timeout(600)
async def test_should_hand_accounts_over_when_scaling_down(deployment: Deployment) -> None:
    d = deployment
    ids = await d.seed(ACCOUNTS, users=30)
    bridges = [
        d.start_bridge(f"t-bridge-{n}", lease_ttl=TTL, max_concurrent_syncs=MAX_SYNCS)
        for n in range(5)
    ]
    await wait_all_synchronized(d, ids, within=240, what="5 bridges, first connect")
    await wait_even(bridges, ACCOUNTS, within=60)
    # SIGTERM to three pods at once, waited for off the event loop: the simulator runs on this
    # loop, and a blocking wait would freeze MetaAPI's side of every hand-over.
    codes = await asyncio.gather(*(asyncio.to_thread(gone.stop) for gone in bridges[2:]))
    assert codes == [0, 0, 0], [gone.log()[-2000:] for gone in bridges[2:]]
    bridges = bridges[:2]
    shares = await wait_even(bridges, ACCOUNTS, within=120)
    took = await wait_all_synchronized(d, ids, within=120, what="after scaling to 2")
    print(f"\nscaled 5 -> 2: {shares}, all synchronized after {took:.1f} s")
    await d.assert_never_twice()
