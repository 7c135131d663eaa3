"""Rate limits over HTTP: shared across pods, strict on login, honest about X-Forwarded-For."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from algoedge.config import ApiSettings
from algoedge.rates import RateLimit

from devtools.services import RedisServer
from tests.integration.conftest import running_api


def strict(settings: ApiSettings, **changes: object) -> ApiSettings:
    defaults: dict[str, object] = {
        "rate_limit_per_user": RateLimit(5, 60),
        "rate_limit_per_ip": RateLimit(1000, 60),
        "rate_limit_auth": RateLimit(3, 60),
    }
    return settings.model_copy(update={**defaults, **changes})


async def test_should_refuse_the_fourth_login_attempt_with_429_headers(
    relaxed_settings: ApiSettings,
) -> None:
    async with running_api(strict(relaxed_settings)) as api:
        await api.register("eve@example.com")  # attempt 1 of 3
        for _ in range(2):
            status, _, response = await api.call(
                "POST",
                "/api/v1/auth/login",
                json={"email": "eve@example.com", "password": "wrong-pass"},
            )
            assert status == 401
            assert response.headers["RateLimit-Limit"] == "3"
        status, body, response = await api.call(
            "POST",
            "/api/v1/auth/login",
            json={"email": "eve@example.com", "password": "correct horse battery"},
        )
        assert status == 429
        assert response.content_type == "application/problem+json"
        assert body["status"] == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers["RateLimit-Remaining"] == "0"
        assert int(response.headers["RateLimit-Reset"]) >= 1


async def test_should_share_a_users_budget_between_pods(relaxed_settings: ApiSettings) -> None:
    settings = strict(relaxed_settings, rate_limit_auth=RateLimit(100, 60))
    async with running_api(settings) as first, running_api(settings) as second:
        _, token = await first.signed_up()
        statuses = []
        for pod in (first, second, first, second, first, second):
            statuses.append((await pod.call("GET", "/api/v1/me", token=token))[0])
        assert statuses == [200, 200, 200, 200, 200, 429]
        # Another user from the same address is not affected by the first user's budget.
        _, other = await second.signed_up()
        assert (await first.call("GET", "/api/v1/me", token=other))[0] == 200


async def test_should_ignore_x_forwarded_for_from_an_untrusted_peer(
    relaxed_settings: ApiSettings,
) -> None:
    settings = strict(relaxed_settings, rate_limit_per_ip=RateLimit(2, 60))
    async with running_api(settings) as api:
        statuses = [
            (await api.call("GET", "/api/v1/bots", headers={"X-Forwarded-For": f"203.0.113.{i}"}))[
                0
            ]
            for i in range(3)
        ]
        assert statuses == [200, 200, 429]


async def test_should_limit_per_client_behind_a_trusted_proxy(
    relaxed_settings: ApiSettings,
) -> None:
    settings = strict(
        relaxed_settings,
        rate_limit_per_ip=RateLimit(2, 60),
        trusted_proxies=(ip_network("127.0.0.0/8"),),
    )
    async with running_api(settings) as api:

        def client(address: str) -> dict[str, str]:
            return {"X-Forwarded-For": address}

        assert (await api.call("GET", "/api/v1/bots", headers=client("198.51.100.7")))[0] == 200
        assert (await api.call("GET", "/api/v1/bots", headers=client("198.51.100.7")))[0] == 200
        assert (await api.call("GET", "/api/v1/bots", headers=client("198.51.100.7")))[0] == 429
        assert (await api.call("GET", "/api/v1/bots", headers=client("198.51.100.8")))[0] == 200


async def test_should_keep_limiting_without_redis(
    relaxed_settings: ApiSettings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    redis = RedisServer(root=tmp_path_factory.mktemp("limiter-redis")).start()
    settings = strict(relaxed_settings, rate_limit_per_ip=RateLimit(3, 60)).model_copy(
        update={"redis_url": redis.url}
    )
    try:
        async with running_api(settings) as api:
            redis.kill()
            statuses = [(await api.call("GET", "/api/v1/bots"))[0] for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
    finally:
        redis.stop()


async def test_should_not_limit_health_and_metrics(relaxed_settings: ApiSettings) -> None:
    settings = strict(relaxed_settings, rate_limit_per_ip=RateLimit(1, 60))
    async with running_api(settings) as api:
        for _ in range(3):
            assert (await api.call("GET", "/healthz"))[0] == 200
            assert (await api.call("GET", "/readyz"))[0] == 200
