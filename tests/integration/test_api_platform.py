"""What the platform reads: capacity (the operator), metrics (Prometheus), the OpenAPI document, and the
indexes the hot queries use."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from algoedge.api.app import API_ROUTES, create_app
from algoedge.api.openapi import build_document
from algoedge.config import ApiSettings
from algoedge.db import Database, marketplace
from algoedge.db.marketplace import signals_page_query
from algoedge.db.trades import closed_trades_page_query, trades_page_query
from algoedge.keys import BRIDGE_CONNECTED_KEY
from redis.asyncio import Redis

from tests.integration.conftest import ApiClient

CAPACITY = "/internal/v1/capacity"


class TestCapacity:
    async def test_should_need_the_internal_token(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        _, user_token = await api.signed_up()
        for token in (None, "wrong-token-wrong-token", user_token):
            status, body, _ = await api.call("GET", CAPACITY, token=token, metrics=True)
            assert status == 401, token
            assert body["status"] == 401

    async def test_should_report_linked_connected_and_backlog(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        internal = relaxed_settings.internal_token.get_secret_value()
        status, body, _ = await api.call("GET", CAPACITY, token=internal, metrics=True)
        assert (status, body) == (
            200,
            {
                "linked_accounts": 0,
                "connected_accounts": 0,
                "queue_backlog": {"default": 0, "reports": 0, "emails": 0},
                "connected_sockets": 0,
            },
        )
        _, token = await api.signed_up()
        for login in ("1", "2", "3"):
            body = {"login": login, "server": "S", "password": "p"}
            assert (await api.call("POST", "/api/v1/accounts", token=token, json=body))[0] == 201
        redis = Redis.from_url(relaxed_settings.redis_url)
        now = time.time()
        await redis.zadd(BRIDGE_CONNECTED_KEY, {"1": now, "2": now, "3": now - 3600})  # 3 is stale
        await redis.rpush("reports", *[json.dumps({"task": i}) for i in range(7)])
        await redis.aclose()
        status, body, _ = await api.call("GET", CAPACITY, token=internal, metrics=True)
        assert status == 200
        assert body == {
            "linked_accounts": 3,
            "connected_accounts": 2,
            # emails: the welcome e-mail of the sign-up above, waiting for a worker.
            "queue_backlog": {"default": 0, "reports": 7, "emails": 1},
            "connected_sockets": 0,
        }


class TestMetrics:
    async def test_should_expose_latency_pool_and_socket_metrics(self, api: ApiClient) -> None:
        await api.call("GET", "/api/v1/bots")
        status, _, response = await api.call("GET", "/healthz")
        assert status == 200
        async with api.session.get(api.metrics_url + "/metrics") as r:
            text = await r.text()
        assert (
            'algoedge_http_request_duration_seconds_count{method="GET",route="/api/v1/bots",status="200"}'
            in text
        )
        assert 'algoedge_db_pool_connections{state="in_use"}' in text
        assert 'algoedge_db_pool_connections{state="max"} 10.0' in text
        assert "algoedge_socketio_connected" in text
        assert response.headers["X-Request-ID"]

    async def test_should_keep_a_sane_request_id_and_replace_a_bad_one(
        self, api: ApiClient
    ) -> None:
        _, _, kept = await api.call("GET", "/healthz", headers={"X-Request-ID": "abc-123"})
        _, _, replaced = await api.call("GET", "/healthz", headers={"X-Request-ID": "bad id\u00e9"})
        assert kept.headers["X-Request-ID"] == "abc-123"
        assert replaced.headers["X-Request-ID"] != "bad id\u00e9"


class TestListeners:
    """/metrics and /internal/v1/* exist only on the metrics port, which the tenant's
    NetworkPolicy opens to the operator and monitoring alone; the public port (behind the
    Ingress) answers them 404 like any unknown path."""

    async def test_should_answer_404_problems_for_metrics_and_internal_on_the_public_port(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        internal = relaxed_settings.internal_token.get_secret_value()
        for path, token in (("/metrics", None), (CAPACITY, internal), (CAPACITY, None)):
            status, body, response = await api.call("GET", path, token=token)
            assert status == 404, path
            assert response.content_type == "application/problem+json"
            assert body["status"] == 404
            assert (await api.call("HEAD", path, token=token))[0] == 404, path

    async def test_should_serve_metrics_and_internal_on_the_metrics_port_only(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        internal = relaxed_settings.internal_token.get_secret_value()
        assert (await api.call("GET", CAPACITY, token=internal, metrics=True))[0] == 200
        async with api.session.get(api.metrics_url + "/metrics") as response:
            assert response.status == 200
            assert "algoedge_http_request_duration_seconds" in await response.text()
        # The API itself and socket.io are not on the metrics port.
        _, token = await api.signed_up()
        for path in ("/api/v1/bots", "/api/v1/openapi.json", "/socket.io/?EIO=4&transport=polling"):
            status, body, _ = await api.call("GET", path, token=token, metrics=True)
            assert (status, body["status"]) == (404, 404), path

    async def test_should_answer_probes_on_both_ports(self, api: ApiClient) -> None:
        for metrics in (False, True):
            assert (await api.call("GET", "/healthz", metrics=metrics))[0] == 200
            assert (await api.call("GET", "/readyz", metrics=metrics))[0] == 200


class TestOpenApi:
    def test_should_document_every_route(self, relaxed_settings: ApiSettings) -> None:
        app = create_app(relaxed_settings)
        routes: set[tuple[str, str]] = set()
        for route in app.router.routes():
            info = route.resource.get_info() if route.resource else {}
            path = info.get("path") or info.get("formatter")
            if route.method == "HEAD" or path is None or path.startswith("/socket.io"):
                continue
            routes.add((route.method.lower(), path))
        documented = {
            (method, path)
            for path, item in build_document(API_ROUTES)["paths"].items()
            for method in item
        }
        assert routes - documented == set(), "routes missing from openapi.json"
        assert documented - routes == set(), "openapi.json documents routes that do not exist"

    async def test_should_serve_the_document(self, api: ApiClient) -> None:
        status, body, _ = await api.call("GET", "/api/v1/openapi.json")
        assert status == 200
        assert body["openapi"].startswith("3.1")
        assert "/api/v1/trades" in body["paths"]


class TestIndexes:
    async def explain(self, db: Database, sql: str, params: list[object]) -> str:
        async with db.cursor() as cur:
            await cur.execute("EXPLAIN " + sql, params)
            return "\n".join(row[0] for row in await cur.fetchall())

    async def test_should_use_the_indexes_for_the_hot_queries(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        db = await Database.connect(relaxed_settings)
        try:
            async with db.cursor() as cur:
                # Enough rows across many users that a sequential scan would lose clearly.
                await cur.execute(
                    "INSERT INTO users (email, name, password_hash) "
                    "SELECT 'u' || g || '@example.com', 'U', 'x' FROM generate_series(1, 200) g"
                )
                await cur.execute(
                    "INSERT INTO mt_accounts (user_id, login, server, platform, encrypted_password) "
                    "SELECT id, id::text, 'S', 'mt5', '\\x00' FROM users"
                )
                await cur.execute(
                    "INSERT INTO trades (account_id, user_id, symbol, side, volume, open_price, opened_at, created_at) "
                    "SELECT a.id, a.user_id, 'EURUSD', 'buy', 1, 1, now(), now() - (g || ' minutes')::interval "
                    "FROM mt_accounts a, generate_series(1, 100) g"
                )
                # Most trades are closed: a report period reads only the closed ones.
                await cur.execute(
                    "UPDATE trades SET closed_at = created_at + interval '1 minute' "
                    "WHERE id % 10 <> 0"
                )
                await cur.execute("ANALYZE trades")
                await cur.execute("ANALYZE mt_accounts")
            for provider in range(30):
                made = await marketplace.create_provider(db, name=f"P{provider}")
                for _ in range(30):
                    await marketplace.publish_signal(
                        db, provider_id=made.id, symbol="EURUSD", side="buy", entry_price=Decimal(1)
                    )
            async with db.cursor() as cur:
                await cur.execute("ANALYZE signals")
            now = datetime.now(UTC)
            plans = {
                "trades page": trades_page_query(
                    user_id=5, account_id=None, since=None, until=None, before=None, limit=21
                ),
                "trades next page": trades_page_query(
                    user_id=5,
                    account_id=None,
                    since=now - timedelta(days=1),
                    until=None,
                    before=(now, 10**9),
                    limit=21,
                ),
                "trades of an account": trades_page_query(
                    user_id=5, account_id=5, since=None, until=None, before=None, limit=21
                ),
                "closed trades of a period": closed_trades_page_query(
                    user_id=5, start=now - timedelta(days=1), end=now, after=None, limit=1000
                ),
                "closed trades next page": closed_trades_page_query(
                    user_id=5,
                    start=now - timedelta(days=1),
                    end=now,
                    after=(now - timedelta(hours=1), 10**6),
                    limit=1000,
                ),
                "signals of a provider": signals_page_query(
                    user_id=5, provider_id=3, since=None, before=None, limit=21
                ),
            }
            expected = {
                "trades page": "trades_user_created",
                "trades next page": "trades_user_created",
                "trades of an account": "trades_account_created",
                "signals of a provider": "signals_provider_created",
                "closed trades of a period": "trades_user_closed",
                "closed trades next page": "trades_user_closed",
            }
            for name, (sql, params) in plans.items():
                plan = await self.explain(db, sql, params)
                assert expected[name] in plan, f"{name}:\n{plan}"
                assert "Seq Scan on trades" not in plan
            bots = await self.explain(
                db,
                "SELECT id FROM marketplace_bots WHERE status = %s AND id > 0 ORDER BY id",
                ["active"],
            )
            assert "marketplace_bots" in bots
        finally:
            await db.close()
