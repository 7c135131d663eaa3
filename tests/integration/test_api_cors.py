"""Browsers on other origins: CORS for ALGOEDGE_ALLOWED_ORIGINS, and socket.io's Origin check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import socketio
from algoedge.config import ApiSettings
from algoedge.rates import RateLimit

from tests.integration.conftest import ApiClient, running_api

FRONT_END = "https://app.example.com"
STRANGER = "https://evil.example"


@pytest.fixture
async def cors_api(relaxed_settings: ApiSettings) -> AsyncIterator[ApiClient]:
    settings = relaxed_settings.model_copy(
        update={"allowed_origins": (FRONT_END, "http://localhost:3000")}
    )
    async with running_api(settings) as client:
        yield client


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_should_answer_a_preflight_from_an_allowed_origin(cors_api: ApiClient) -> None:
    status, _, response = await cors_api.call("OPTIONS", "/api/v1/me", headers=preflight(FRONT_END))
    assert status == 204
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_should_refuse_a_preflight_from_another_origin(cors_api: ApiClient) -> None:
    status, body, response = await cors_api.call(
        "OPTIONS", "/api/v1/me", headers=preflight(STRANGER)
    )
    assert status == 403
    assert response.content_type == "application/problem+json"
    assert body["detail"] == "This origin may not call the API."
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_should_let_an_allowed_origin_read_answers_and_errors(cors_api: ApiClient) -> None:
    _, token = await cors_api.signed_up()
    status, _, response = await cors_api.call(
        "GET", "/api/v1/me", token=token, headers={"Origin": FRONT_END}
    )
    assert status == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert "RateLimit-Remaining" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers.getall("Vary")
    status, _, response = await cors_api.call("GET", "/api/v1/me", headers={"Origin": FRONT_END})
    assert status == 401
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END
    # Another origin gets its answer, but nothing that lets its script read it.
    status, _, response = await cors_api.call(
        "GET", "/api/v1/me", token=token, headers={"Origin": STRANGER}
    )
    assert status == 200
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_should_let_an_allowed_origin_read_a_429(relaxed_settings: ApiSettings) -> None:
    settings = relaxed_settings.model_copy(
        update={"allowed_origins": (FRONT_END,), "rate_limit_per_ip": RateLimit(1, 60)}
    )
    async with running_api(settings) as api:
        statuses = []
        for _ in range(3):
            status, _, response = await api.call(
                "GET", "/api/v1/bots", headers={"Origin": FRONT_END}
            )
            statuses.append(status)
        assert statuses[-1] == 429
        assert response.headers["Access-Control-Allow-Origin"] == FRONT_END
        assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


async def test_should_send_no_cors_headers_when_no_origin_is_configured(api: ApiClient) -> None:
    status, _, response = await api.call("GET", "/api/v1/bots", headers={"Origin": FRONT_END})
    assert status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    status, _, _ = await api.call("OPTIONS", "/api/v1/me", headers=preflight(FRONT_END))
    assert status == 405


async def test_should_open_sockets_only_from_allowed_origins(cors_api: ApiClient) -> None:
    _, token = await cors_api.signed_up()

    async def connect(headers: dict[str, str]) -> None:
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(
                cors_api.base_url,
                headers=headers,
                auth={"token": token},
                transports=["websocket"],
                wait_timeout=10,
            )
            assert client.connected
        finally:
            await client.disconnect()

    await connect({"Origin": FRONT_END})
    await connect({})  # not a browser: no Origin header, nothing to check
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect({"Origin": STRANGER})
