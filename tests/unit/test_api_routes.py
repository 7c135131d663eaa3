"""The route table is each route's one statement of policy: the middlewares enforce exactly what it
says (who may call, which budgets are spent) and the OpenAPI document describes exactly that."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from algoedge.api.app import API_ROUTES
from algoedge.api.middleware import MIDDLEWARES, add_response_headers
from algoedge.api.openapi import build_document
from algoedge.api.routes import Route, add_routes
from algoedge.api.state import LIMITER, SESSIONS, SETTINGS
from algoedge.auth import Claims, Sessions, Tokens
from algoedge.cache import CachedUser
from algoedge.config import ApiSettings, load_settings
from algoedge.ratelimit import Decision, RateLimiter
from algoedge.rates import RateLimit

INTERNAL_TOKEN = "i" * 16
JWT_SECRET = "j" * 32
SETTINGS_ENV = {
    "ALGOEDGE_DATABASE_URL": "postgresql://app:pw@127.0.0.1:1/algoedge",
    "ALGOEDGE_REDIS_URL": "redis://127.0.0.1:1/0",
    "ALGOEDGE_JWT_SECRET": JWT_SECRET,
    "ALGOEDGE_INTERNAL_TOKEN": INTERNAL_TOKEN,
    "ALGOEDGE_CREDENTIALS_KEY": "q3Jm3mzJUCcoQ2d5_-q-dJZxZC-ORG-OOe1xPZ8L4w8=",
}
REACHED = "the handler ran"


class UserSessions:
    """Sessions without Redis or Postgres: any token the real Tokens accept is user 7's."""

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens

    def decode(self, token: str) -> Claims:
        return self._tokens.decode(token)

    def prefetch(self, claims: Claims) -> None:
        return None  # nothing to read in the limiter's round trip: user_of needs no I/O here

    async def user_of(self, claims: Claims, *, prefetched: object = None) -> CachedUser:
        return CachedUser(
            id=claims.user_id, email="u@example.com", name="U", email_reports=False, version=1
        )


@dataclass
class RecordingLimiter:
    """Allows every request and keeps the keys each one was checked against."""

    checked: list[list[str]] = field(default_factory=list)

    async def check(self, limits: Sequence[tuple[str, RateLimit]]) -> Decision:
        self.checked.append([key for key, _ in limits])
        return Decision(
            allowed=True, limit=10, remaining=9, reset_seconds=1, retry_after_seconds=0, scope="ip"
        )

    async def check_and_read(
        self, limits: Sequence[tuple[str, RateLimit]], read: Sequence[str]
    ) -> tuple[Decision, None]:
        return await self.check(limits), None


async def _reached(request: web.Request) -> web.Response:
    return web.Response(text=REACHED)


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    limiter: RecordingLimiter
    user_token: str


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[Api]:
    """The real middlewares over the real route table, each handler replaced by one that answers
    REACHED: what a request gets then is the middlewares' doing alone."""
    tokens = Tokens(JWT_SECRET, ttl_seconds=300)
    limiter = RecordingLimiter()
    app = web.Application(middlewares=MIDDLEWARES)
    app[SETTINGS] = load_settings(ApiSettings, SETTINGS_ENV)
    app[SESSIONS] = cast(Sessions, UserSessions(tokens))
    app[LIMITER] = cast(RateLimiter, limiter)
    app.on_response_prepare.append(add_response_headers)
    # A route added without a declaration, to show such a route is treated strictly.
    app.router.add_get("/undeclared", _reached)
    # One listener here: which port serves which route is tests/integration's (TestListeners).
    add_routes(
        app,
        [replace(route, handler=_reached, listener="both") for route in API_ROUTES],
        metrics_port=0,
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        user_token = tokens.issue(7, now=datetime.now(UTC)).token
        yield Api(client=client, limiter=limiter, user_token=user_token)
    finally:
        await client.close()


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def _call(api: Api, route: Route, token: str | None) -> tuple[int, str, list[list[str]]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    api.limiter.checked.clear()
    async with api.client.request(route.method, _concrete(route.path), headers=headers) as resp:
        # The scope of each key checked ("user", "ip", "auth"), per limiter call.
        scopes = [[key.split(":")[0] for key in keys] for keys in api.limiter.checked]
        return resp.status, await resp.text(), scopes


def _name(route: Route) -> str:
    return f"{route.method} {route.path}"


@pytest.mark.parametrize("route", API_ROUTES, ids=_name)
class TestMiddlewaresEnforceTheTable:
    async def test_should_let_in_exactly_who_the_table_names(self, api: Api, route: Route) -> None:
        tokens = {"public": None, "user": api.user_token, "internal": INTERNAL_TOKEN}
        for auth, token in tokens.items():
            status, text, _ = await _call(api, route, token)
            if route.auth in ("public", auth):
                assert (status, text) == (200, REACHED), f"{auth} caller refused"
            else:
                assert status == 401, f"{auth} caller let in to a {route.auth} route"

    async def test_should_spend_the_budgets_the_table_names(self, api: Api, route: Route) -> None:
        token = {"public": None, "user": api.user_token, "internal": INTERNAL_TOKEN}[route.auth]
        _, _, scopes = await _call(api, route, token)
        expected = {
            None: [],
            "auth": [["auth"]],
            # A new socket.io connection (no engine.io sid in the query) is one handshake.
            "socket": [["socket"]],
            # The user's budget only when the token names a user.
            "default": [["user", "ip"] if route.auth == "user" else ["ip"]],
        }[route.rate]
        assert scopes == expected


async def test_should_need_a_user_and_limits_on_a_route_added_without_declaration(
    api: Api,
) -> None:
    undeclared = Route("GET", "/undeclared", _reached, summary="", responses={})
    status, _, checked = await _call(api, undeclared, None)
    assert status == 401
    assert checked == [["ip"]]


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


class TestDocumentDescribesTheTable:
    def test_should_document_each_declared_route_once_with_its_policy(self) -> None:
        operations = _operations(build_document(API_ROUTES))
        documented = [route for route in API_ROUTES if route.documented]
        assert sorted(operations) == sorted(_name(route) for route in documented)
        security: dict[str, list[dict[str, list[str]]]] = {
            "public": [],
            "user": [{"bearerAuth": []}],
            "internal": [{"internalToken": []}],
        }
        for route in documented:
            operation = operations[_name(route)]
            assert operation["security"] == security[route.auth], _name(route)
            answers_401 = route.auth != "public" or 401 in route.responses  # login's wrong password
            assert ("401" in operation["responses"]) == answers_401, _name(route)
            assert ("429" in operation["responses"]) == (route.rate is not None), _name(route)
            path_parameters = [
                p["name"] for p in operation.get("parameters", []) if p["in"] == "path"
            ]
            assert path_parameters == list(route.path_parameters), _name(route)

    def test_should_leave_socketio_out_of_the_document(self) -> None:
        assert not any(
            path.startswith("/socket.io") for path in build_document(API_ROUTES)["paths"]
        )

    def test_should_describe_a_nested_record_as_a_schema_of_its_own(self) -> None:
        document = build_document(API_ROUTES)
        schemas = document["components"]["schemas"]
        account = schemas["MtAccount"]
        assert account["properties"]["connection"] == {
            "$ref": "#/components/schemas/AccountConnection"
        }
        assert "state" not in account["properties"]
        assert schemas["AccountConnection"]["additionalProperties"] is False
        assert "$defs" not in str(document)  # every reference resolves in components

    def test_should_refuse_a_response_schema_it_does_not_define(self) -> None:
        route = Route("GET", "/x", _reached, summary="x", responses={200: ("OK", "Nowhere")})
        with pytest.raises(ValueError, match="Nowhere"):
            build_document([route])


class TestListeners:
    def test_should_put_platform_routes_on_the_metrics_listener_only(self) -> None:
        listeners = {(route.method, route.path): route.listener for route in API_ROUTES}
        assert listeners[("GET", "/metrics")] == "metrics"
        assert listeners[("GET", "/internal/v1/capacity")] == "metrics"
        assert listeners[("GET", "/healthz")] == listeners[("GET", "/readyz")] == "both"
        others = {
            listener
            for (_, path), listener in listeners.items()
            if path not in ("/metrics", "/internal/v1/capacity", "/healthz", "/readyz")
        }
        assert others == {"public"}

    def test_should_refuse_one_path_on_two_listeners(self) -> None:
        (metrics,) = [route for route in API_ROUTES if route.path == "/metrics"]
        with pytest.raises(ValueError, match="one listener"):
            add_routes(
                web.Application(),
                [metrics, replace(metrics, method="POST", listener="public")],
                metrics_port=9090,
            )
