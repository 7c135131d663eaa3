"""Read replicas: listings and report input come from the replica, what a user wrote reads back
from the primary, and the primary answers every read while the replica is down or behind.

A real primary with a streaming replica (``pg_basebackup -R``), both behind one pgBouncer whose
``<db>_ro`` alias is the replica, as in the cluster. Where a statement ran is read from each
server's own pg_stat_statements.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest
from algoedge.config import ApiSettings, MigrateSettings, WorkerSettings, load_settings
from algoedge.db import Database, jobs, trades
from algoedge.jobs.runtime import Runtime
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from devtools.app import api_environment, migrated
from devtools.services import PgBouncer, PostgresServer, RedisServer, StreamingReplica
from tests.integration.conftest import RELAXED_LIMITS, ApiClient, running_api

T = TypeVar("T")

ACCOUNT = {"login": "40001234", "server": "Broker-Demo", "password": "mt5-secret-pw"}
#: Fragments of the statements whose server the tests check (pg_stat_statements' normalized text).
TRADES_PAGE = "FROM trades WHERE user_id = $1 ORDER BY created_at DESC"
CLOSED_TRADES_PAGE = "FROM trades WHERE user_id = $1 AND closed_at IS NOT NULL"
LINK_ACCOUNT = "INSERT INTO mt_accounts"


async def eventually(what: str, check: Callable[[], Awaitable[T | None]], within: float = 60) -> T:
    """Await ``check`` until it returns something truthy; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, f"timed out after {within:.0f}s waiting for {what}"
        await asyncio.sleep(0.2)


def calls(server: PostgresServer, database: str, fragment: str) -> int:
    """How many times ``server`` ran statements containing ``fragment`` in ``database``."""
    where = f"d.datname = '{database}' AND s.query LIKE '%{fragment}%'"
    sql = "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d "
    return int(server.psql(sql + f"ON d.oid = s.dbid WHERE {where}", database=database))


@pytest.fixture
def replicated_database(
    replicated_postgres: PostgresServer, replica: StreamingReplica, replica_pgbouncer: PgBouncer
) -> Iterator[str]:
    """A fresh database on the primary, replicated, with pg_stat_statements' view in it."""
    name = replicated_postgres.create_database(f"r_{secrets.token_hex(6)}")
    replicated_postgres.psql("CREATE EXTENSION pg_stat_statements", database=name)
    yield name
    replicated_postgres.psql(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
async def replica_environment(
    replicated_database: str,
    replica: StreamingReplica,
    replica_pgbouncer: PgBouncer,
    redis_server: RedisServer,
) -> dict[str, str]:
    """An API pod's variables with ALGOEDGE_DATABASE_READ_URL on pgBouncer's read alias, for a
    migrated database the replica has caught up with."""
    redis = Redis.from_url(redis_server.url)
    await redis.flushall()
    await redis.aclose()
    primary_url = replica_pgbouncer.url_for(replicated_database)
    await migrated(load_settings(MigrateSettings, {"ALGOEDGE_DATABASE_URL": primary_url}))
    replica.wait_caught_up()
    return {
        **api_environment(primary_url, redis_server.url),
        **RELAXED_LIMITS,
        "ALGOEDGE_DATABASE_READ_URL": replica_pgbouncer.read_url_for(replicated_database),
    }


@pytest.fixture
async def primary_db(replica_environment: dict[str, str]) -> AsyncIterator[Database]:
    """The primary alone (plain settings, no replica): how the bridge writes trades."""
    url = replica_environment["ALGOEDGE_DATABASE_URL"]
    database = await Database.connect(
        load_settings(MigrateSettings, {"ALGOEDGE_DATABASE_URL": url})
    )
    yield database
    await database.close()


@pytest.fixture
def paused_replay(replica: StreamingReplica) -> Iterator[Callable[[], None]]:
    """Call it to pause the replica's replay (the replica then trails every new write); replay
    resumes at the end of the test whatever happens."""

    def pause() -> None:
        replica.psql("SELECT pg_wal_replay_pause()")

    yield pause
    replica.psql("SELECT pg_wal_replay_resume()")


async def metric(api: ApiClient, name: str, **labels: str) -> float:
    async with api.session.get(api.metrics_url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def replica_in_use(api: ApiClient) -> bool:
    return await metric(api, "algoedge_db_replica_usable") == 1


async def replica_not_used(api: ApiClient) -> bool:
    return await metric(api, "algoedge_db_replica_usable") == 0


async def linked_trader(api: ApiClient) -> tuple[str, int]:
    """A signed-up user with one linked account: (token, account id)."""
    _, token = await api.signed_up()
    status, body, _ = await api.call("POST", "/api/v1/accounts", token=token, json=ACCOUNT)
    assert status == 201, body
    return token, int(body["id"])


async def record_trades(db: Database, account_id: int, count: int, *, closed: bool = False) -> None:
    opened = datetime.now(UTC) - timedelta(hours=2)
    for i in range(count):
        await trades.record_trade(
            db,
            account_id=account_id,
            symbol="EURUSD",
            side="buy",
            volume=Decimal("0.10"),
            open_price=Decimal("1.08500"),
            opened_at=opened + timedelta(minutes=i),
            close_price=Decimal("1.08600") if closed else None,
            profit=Decimal("10.00") if closed else None,
            closed_at=opened + timedelta(minutes=i + 1) if closed else None,
        )


async def trade_ids(api: ApiClient, token: str) -> list[int]:
    status, body, _ = await api.call("GET", "/api/v1/trades?limit=100", token=token)
    assert status == 200, body
    return [int(t["id"]) for t in body["items"]]


async def test_should_list_trades_from_the_replica_and_write_to_the_primary(
    replica_environment: dict[str, str],
    replicated_database: str,
    replicated_postgres: PostgresServer,
    replica: StreamingReplica,
    primary_db: Database,
) -> None:
    async with running_api(load_settings(ApiSettings, replica_environment)) as api:
        token, account_id = await linked_trader(api)
        await record_trades(primary_db, account_id, 3)
        replica.wait_caught_up()
        counted = await metric(api, "algoedge_db_queries_total", pool="replica")
        assert len(await trade_ids(api, token)) == 3
        assert len(await trade_ids(api, token)) == 3

        assert calls(replica, replicated_database, TRADES_PAGE) == 2
        assert calls(replicated_postgres, replicated_database, TRADES_PAGE) == 0
        assert calls(replicated_postgres, replicated_database, LINK_ACCOUNT) == 1
        assert calls(replica, replicated_database, LINK_ACCOUNT) == 0
        assert await metric(api, "algoedge_db_queries_total", pool="replica") == counted + 2


async def test_should_read_what_a_user_wrote_from_the_primary_at_once(
    replica_environment: dict[str, str],
    replicated_database: str,
    replica: StreamingReplica,
    primary_db: Database,
    paused_replay: Callable[[], None],
) -> None:
    """With replay paused the replica misses every new row, yet stays in use (the bound is an
    hour): the routes that read back the user's own writes must not go there."""
    environment = {**replica_environment, "ALGOEDGE_DATABASE_READ_MAX_LAG": "3600"}
    async with running_api(load_settings(ApiSettings, environment)) as api:
        _, token = await api.signed_up()
        paused_replay()

        status, account, _ = await api.call("POST", "/api/v1/accounts", token=token, json=ACCOUNT)
        assert status == 201, account
        status, body, _ = await api.call("GET", f"/api/v1/accounts/{account['id']}", token=token)
        assert (status, body["id"]) == (200, account["id"])
        status, body, _ = await api.call("GET", "/api/v1/accounts", token=token)
        assert [a["id"] for a in body["items"]] == [account["id"]]
        # The ownership check of a trades filter sees the new account too (no 404).
        status, body, _ = await api.call(
            "GET", f"/api/v1/trades?account_id={account['id']}", token=token
        )
        assert (status, body["items"]) == (200, [])

        day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        status, report, response = await api.call(
            "POST", "/api/v1/reports", token=token, json={"kind": "daily", "period_start": day}
        )
        assert status == 202, report
        status, body, _ = await api.call("GET", response.headers["Location"], token=token)
        assert (status, body["id"]) == (200, report["id"])
        status, body, _ = await api.call("GET", "/api/v1/reports", token=token)
        assert [r["id"] for r in body["items"]] == [report["id"]]

        # Trades (written by the bridge, not the user) do come from the replica: stale here.
        await record_trades(primary_db, int(account["id"]), 2)
        assert await trade_ids(api, token) == []
        assert await replica_in_use(api)


async def test_should_answer_from_the_primary_while_the_replica_is_down(
    replica_environment: dict[str, str],
    replicated_database: str,
    replica: StreamingReplica,
    primary_db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A read caught on the replica as it stops waits at most this long, then the primary answers.
    environment = {**replica_environment, "ALGOEDGE_DB_TIMEOUT": "3"}
    async with running_api(load_settings(ApiSettings, environment)) as api:
        token, account_id = await linked_trader(api)
        await record_trades(primary_db, account_id, 2)
        replica.wait_caught_up()
        assert len(await trade_ids(api, token)) == 2
        fallbacks = await metric(api, "algoedge_db_replica_fallbacks_total", reason="unreachable")
        with caplog.at_level(logging.INFO, logger="algoedge.db.replica"):
            replica.stop()
            try:
                # Every read while it is down is answered, first by waiting out the replica,
                # then straight from the primary, which has the newest trades.
                await record_trades(primary_db, account_id, 1)
                for _ in range(3):
                    assert len(await trade_ids(api, token)) == 3
                    status, _, _ = await api.call("GET", "/api/v1/bots", token=token)
                    assert status == 200
                await eventually("reads to leave the replica", lambda: replica_not_used(api))
                assert len(await trade_ids(api, token)) == 3
                assert (
                    await metric(api, "algoedge_db_replica_fallbacks_total", reason="unreachable")
                    > fallbacks
                )
            finally:
                replica.start()
            await eventually("reads to come back to the replica", lambda: replica_in_use(api))
            before = calls(replica, replicated_database, TRADES_PAGE)
            assert len(await trade_ids(api, token)) == 3
            assert calls(replica, replicated_database, TRADES_PAGE) == before + 1

    changes = [r.getMessage() for r in caplog.records if r.name == "algoedge.db.replica"]
    assert len([m for m in changes if m.startswith("read replica not used (unreachable)")]) == 1
    assert len([m for m in changes if m.startswith("read replica in use")]) == 1


async def test_should_start_and_serve_while_the_replica_is_down(
    replica_environment: dict[str, str], replica: StreamingReplica
) -> None:
    """A pod (re)starting while the replica is away: ready, every read answered, then the
    replica taken into use once it is back."""
    replica.stop()
    stopped = True
    try:
        async with running_api(load_settings(ApiSettings, replica_environment)) as api:
            assert await replica_not_used(api)
            status, body, _ = await api.call("GET", "/readyz")
            assert (status, body["checks"]) == (200, {"postgres": "ok", "redis": "ok"})
            token, _ = await linked_trader(api)
            assert await trade_ids(api, token) == []
            replica.start()
            stopped = False
            await eventually("reads to go to the replica", lambda: replica_in_use(api))
            assert await trade_ids(api, token) == []
    finally:
        if stopped:
            replica.start()


async def test_should_answer_from_the_primary_while_the_replica_lags(
    replica_environment: dict[str, str],
    replicated_database: str,
    replica: StreamingReplica,
    primary_db: Database,
    paused_replay: Callable[[], None],
) -> None:
    environment = {**replica_environment, "ALGOEDGE_DATABASE_READ_MAX_LAG": "1"}
    async with running_api(load_settings(ApiSettings, environment)) as api:
        token, account_id = await linked_trader(api)
        replica.wait_caught_up()
        await eventually("the replica in use", lambda: replica_in_use(api))
        fallbacks = await metric(api, "algoedge_db_replica_fallbacks_total", reason="lag")
        paused_replay()
        await record_trades(primary_db, account_id, 2)

        await eventually("reads to leave the lagging replica", lambda: replica_not_used(api))
        assert await metric(api, "algoedge_db_replica_lag_seconds") > 1
        # Fresh, because the primary answers: the paused replica has neither trade.
        assert len(await trade_ids(api, token)) == 2
        assert await metric(api, "algoedge_db_replica_fallbacks_total", reason="lag") == (
            fallbacks + 1
        )

        replica.psql("SELECT pg_wal_replay_resume()")
        await eventually("reads to come back to the caught-up replica", lambda: replica_in_use(api))
        before = calls(replica, replicated_database, TRADES_PAGE)
        assert len(await trade_ids(api, token)) == 2
        assert calls(replica, replicated_database, TRADES_PAGE) == before + 1


async def test_should_stay_on_the_replica_while_the_primary_is_idle(
    replica_environment: dict[str, str],
) -> None:
    """A replay timestamp ages while nothing is written; the WAL positions the lag is measured
    from do not, so an idle tenant keeps its replica (bound 1 s, several idle checks)."""
    environment = {**replica_environment, "ALGOEDGE_DATABASE_READ_MAX_LAG": "1"}
    async with running_api(load_settings(ApiSettings, environment)) as api:
        await eventually("the replica in use", lambda: replica_in_use(api))
        # Four checks of an idle primary (a check a second), all below the bound.
        for _ in range(4):
            await asyncio.sleep(1)
            assert await replica_in_use(api)
            assert await metric(api, "algoedge_db_replica_lag_seconds") <= 1


async def test_should_read_report_input_from_the_replica_in_the_worker(
    replica_environment: dict[str, str],
    replicated_database: str,
    replicated_postgres: PostgresServer,
    replica: StreamingReplica,
    primary_db: Database,
) -> None:
    """The worker's report generation reads the period's trades through its own runtime."""
    async with running_api(load_settings(ApiSettings, replica_environment)) as api:
        token, account_id = await linked_trader(api)
        _, me, _ = await api.call("GET", "/api/v1/me", token=token)
    await record_trades(primary_db, account_id, 4, closed=True)
    replica.wait_caught_up()
    worker_environment = {
        key: value
        for key, value in replica_environment.items()
        if key in ("ALGOEDGE_DATABASE_URL", "ALGOEDGE_REDIS_URL", "ALGOEDGE_DATABASE_READ_URL")
    }
    runtime = Runtime(load_settings(WorkerSettings, worker_environment), pool_max=2)
    try:
        now = datetime.now(UTC)
        found = await asyncio.to_thread(
            runtime.query,
            jobs.closed_trades,
            user_id=int(me["id"]),
            start=now - timedelta(days=1),
            end=now,
        )
    finally:
        await asyncio.to_thread(runtime.close)
    assert len(found) == 4
    assert calls(replica, replicated_database, CLOSED_TRADES_PAGE) == 1
    assert calls(replicated_postgres, replicated_database, CLOSED_TRADES_PAGE) == 0
