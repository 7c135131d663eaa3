"""The OpenAPI 3.1 document of the public API, built from the same models the handlers validate with.

Request schemas come from the pydantic input models, response schemas from the data layer's
records (serialization mode: money as strings, times as RFC 3339), so the document cannot drift
from the code silently; a test fails when a route is missing here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from algoedge import __version__
from algoedge.api.accounts import AccountIn
from algoedge.api.auth import LoginIn, RegisterIn
from algoedge.api.io import PageQuery, render
from algoedge.api.marketplace import BotsQuery, SignalsQuery, SubscribeIn
from algoedge.api.me import MePatch
from algoedge.api.middleware import public, rate_class
from algoedge.api.notifications import NotificationsQuery
from algoedge.api.reports import ReportRequest, ReportsQuery
from algoedge.api.trades import TradesQuery
from algoedge.capacity import Capacity
from algoedge.db.accounts import MtAccount
from algoedge.db.marketplace import Bot, Provider, Signal
from algoedge.db.notifications import Notification
from algoedge.db.reports import Report, ReportSummary
from algoedge.db.trades import Trade

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
        "additionalProperties": False,
    }


def _page_of(name: str) -> dict[str, Any]:
    return _object(
        {
            "items": {"type": "array", "items": _ref(name)},
            "next_cursor": {"type": ["string", "null"]},
        }
    )


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for record in (
        MtAccount,
        Trade,
        Bot,
        Provider,
        Signal,
        Capacity,
        ReportSummary,
        Report,
        Notification,
    ):
        schema = TypeAdapter(record).json_schema(mode="serialization", ref_template=_REF)
        schema["additionalProperties"] = False
        schemas[record.__name__] = schema
    for model in (RegisterIn, LoginIn, MePatch, AccountIn, SubscribeIn, ReportRequest):
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    problem = {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": _object({"field": {"type": "string"}, "message": {"type": "string"}}),
            },
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["type", "title", "status"],
    }
    user = _object(
        {"id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"}}
    )
    me = _object({**user["properties"], "email_reports": {"type": "boolean"}})
    schemas.update(
        {
            "Problem": problem,
            "User": user,
            "Me": me,
            "Token": _object(
                {
                    "access_token": {"type": "string"},
                    "token_type": {"const": "bearer"},
                    "expires_in": {"type": "integer"},
                }
            ),
            "Subscription": _object(
                {
                    "id": {"type": "integer"},
                    "bot_id": {"type": "integer"},
                    "account_id": {"type": ["integer", "null"]},
                }
            ),
            "Follow": _object({"id": {"type": "integer"}, "provider_id": {"type": "integer"}}),
            "Health": {
                "type": "object",
                "properties": {"status": {"type": "string"}},
                "required": ["status"],
            },
            "AccountPage": _page_of("MtAccount"),
            "TradePage": _page_of("Trade"),
            "BotPage": _page_of("Bot"),
            "ProviderPage": _page_of("Provider"),
            "SignalPage": _page_of("Signal"),
            "ReportPage": _page_of("ReportSummary"),
            "NotificationPage": _page_of("Notification"),
        }
    )
    return schemas


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _path_parameter(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999},
    }


def _json(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}}


def _operation(
    summary: str,
    responses: dict[int, tuple[str, dict[str, Any] | None]],
    *,
    auth: bool = True,
    limited: bool = True,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    path: list[str] | None = None,
    not_found: bool = False,
    media: str = "application/json",
    location: bool = False,
) -> dict[str, Any]:
    problem = _json(_ref("Problem"), "application/problem+json")
    operation: dict[str, Any] = {"summary": summary, "responses": {}}
    parameters = [_path_parameter(p) for p in path or []]
    if query is not None:
        parameters += _query_parameters(query)
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": body_required, **_json(_ref(body.__name__))}
    for status, (description, schema) in responses.items():
        content = (
            {} if schema is None else problem if schema == _ref("Problem") else _json(schema, media)
        )
        operation["responses"][str(status)] = {"description": description, **content}
        if location and 200 <= status < 300:
            operation["responses"][str(status)]["headers"] = {
                "Location": {"required": True, "schema": {"type": "string"}}
            }
    errors: dict[int, str] = {}
    if body is not None:
        errors |= {400: "The body is not a JSON object", 413: "The body is over 1 MiB"}
    if body is not None or query is not None:
        errors[422] = "Some fields are not valid"
    if path or not_found:
        errors[404] = "No such resource (or not yours)"
    if auth:
        errors[401] = "Missing, expired or revoked access token"
        operation["security"] = [{"bearerAuth": []}]
    else:
        operation["security"] = []
    if limited:
        errors[429] = "Rate limit reached; see Retry-After"
    for status, description in errors.items():
        operation["responses"].setdefault(str(status), {"description": description, **problem})
    # aiohttp's HTTP parser answers an oversized request line or header itself, before any
    # route runs, with a text/plain 400: the one error that is not problem+json.
    operation["responses"]["400"] = {
        "description": operation["responses"].get("400", {}).get("description")
        or "Malformed request",
        "content": {
            **problem["content"],
            "text/plain": {"schema": {"type": "string"}},
        },
    }
    return operation


def build_document() -> dict[str, Any]:
    """The whole document; pure, so tests can compare it with the router."""
    ok = "OK"
    paths: dict[str, dict[str, Any]] = {
        "/api/v1/auth/register": {
            "post": _operation(
                "Create a user",
                {201: ("Created", _ref("User")), 409: ("Email taken", _ref("Problem"))},
                auth=False,
                body=RegisterIn,
            )
        },
        "/api/v1/auth/login": {
            "post": _operation(
                "Get an access token",
                {200: (ok, _ref("Token")), 401: ("Wrong email or password", _ref("Problem"))},
                auth=False,
                body=LoginIn,
            )
        },
        "/api/v1/auth/logout": {
            "post": _operation("End this token's session", {204: ("Logged out", None)})
        },
        "/api/v1/me": {
            "get": _operation("The signed-in user", {200: (ok, _ref("Me"))}),
            "patch": _operation(
                "Rename the signed-in user or change their settings",
                {200: (ok, _ref("Me"))},
                body=MePatch,
            ),
        },
        "/api/v1/accounts": {
            "get": _operation(
                "My linked accounts", {200: (ok, _ref("AccountPage"))}, query=PageQuery
            ),
            "post": _operation(
                "Link a MetaTrader account",
                {201: ("Linked", _ref("MtAccount")), 409: ("Already linked", _ref("Problem"))},
                body=AccountIn,
            ),
        },
        "/api/v1/accounts/{account_id}": {
            "get": _operation(
                "One of my accounts", {200: (ok, _ref("MtAccount"))}, path=["account_id"]
            ),
            "delete": _operation(
                "Unlink one of my accounts", {204: ("Unlinked", None)}, path=["account_id"]
            ),
        },
        "/api/v1/trades": {
            "get": _operation(
                "My trades, newest first",
                {200: (ok, _ref("TradePage"))},
                query=TradesQuery,
                not_found=True,  # account_id of an account that is not the caller's
            )
        },
        "/api/v1/reports": {
            "get": _operation(
                "My reports, newest first", {200: (ok, _ref("ReportPage"))}, query=ReportsQuery
            ),
            "post": _operation(
                "Request the report of a period (idempotent: the same period answers the same "
                "report, computed once)",
                {202: ("Accepted; pending until a worker computes it", _ref("Report"))},
                body=ReportRequest,
                location=True,
            ),
        },
        "/api/v1/reports/{report_id}": {
            "get": _operation(
                "One of my reports with its figures (null until ready)",
                {200: (ok, _ref("Report"))},
                path=["report_id"],
            )
        },
        "/api/v1/reports/{report_id}/csv": {
            "get": _operation(
                "The trades closed in the report's period, as CSV (any report status)",
                {200: (ok, {"type": "string"})},
                path=["report_id"],
                media="text/csv",
            )
        },
        "/api/v1/notifications": {
            "get": _operation(
                "My notifications, newest first (unread=true: unread only; false: read only)",
                {200: (ok, _ref("NotificationPage"))},
                query=NotificationsQuery,
            )
        },
        "/api/v1/notifications/{notification_id}/read": {
            "post": _operation(
                "Mark one of my notifications read (again: keeps the first time)",
                {204: ("Read", None)},
                path=["notification_id"],
            )
        },
        "/api/v1/bots": {
            "get": _operation(
                "The bot marketplace", {200: (ok, _ref("BotPage"))}, auth=False, query=BotsQuery
            )
        },
        "/api/v1/bots/{bot_id}": {
            "get": _operation("One bot", {200: (ok, _ref("Bot"))}, auth=False, path=["bot_id"])
        },
        "/api/v1/bots/{bot_id}/subscribe": {
            "post": _operation(
                "Subscribe to an active bot",
                {
                    200: ("Already subscribed", _ref("Subscription")),
                    201: ("Subscribed", _ref("Subscription")),
                },
                body=SubscribeIn,
                body_required=False,
                path=["bot_id"],
            )
        },
        "/api/v1/providers": {
            "get": _operation(
                "Signal providers", {200: (ok, _ref("ProviderPage"))}, auth=False, query=PageQuery
            )
        },
        "/api/v1/providers/{provider_id}/follow": {
            "post": _operation(
                "Follow a provider",
                {200: ("Already following", _ref("Follow")), 201: ("Following", _ref("Follow"))},
                path=["provider_id"],
            )
        },
        "/api/v1/signals": {
            "get": _operation(
                "Signals of one provider, or of those I follow",
                {200: (ok, _ref("SignalPage"))},
                query=SignalsQuery,
                not_found=True,  # provider_id of no active provider
            )
        },
        "/api/v1/openapi.json": {
            "get": _operation(
                "This document", {200: (ok, {"type": "object"})}, auth=False, limited=False
            )
        },
        "/healthz": {
            "get": _operation("Liveness", {200: (ok, _ref("Health"))}, auth=False, limited=False)
        },
        "/readyz": {
            "get": _operation(
                "Readiness: Postgres and Redis answer",
                {200: (ok, _ref("Health")), 503: ("Not ready", _ref("Problem"))},
                auth=False,
                limited=False,
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": ok,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/internal/v1/capacity": {
            "get": {
                **_operation(
                    "Demand for the operator's scalers (internal token)",
                    {200: (ok, _ref("Capacity")), 503: ("Redis unavailable", _ref("Problem"))},
                    limited=False,
                ),
                "security": [{"internalToken": []}],
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "AlgoEdge API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "internalToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }


_DOCUMENT = build_document()


@public
@rate_class(None)
async def document(request: web.Request) -> web.Response:
    return render(_DOCUMENT)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", document)
