"""The OpenAPI 3.1 document of the public API, written from the route tables the router registers.

Each operation comes from its :class:`~algoedge.api.routes.Route` (path, method, policy, models,
answers); request schemas from the pydantic input models the handlers validate with, response
schemas from the data layer's records (serialization mode: money as strings, times as RFC 3339),
so the document cannot drift from the code silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from algoedge import __version__
from algoedge.api.io import render
from algoedge.api.routes import Route
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


def _components(bodies: Iterable[type[BaseModel]]) -> dict[str, Any]:
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
        # Records nested in a record (an account's connection) become schemas of their own.
        for name, nested in schema.pop("$defs", {}).items():
            if nested.get("type") == "object":
                nested["additionalProperties"] = False
            schemas[name] = nested
        schema["additionalProperties"] = False
        schemas[record.__name__] = schema
    for model in bodies:
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
            "Registered": _object({"email": {"type": "string"}, "message": {"type": "string"}}),
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


def _operation(route: Route) -> dict[str, Any]:
    problem = _json(_ref("Problem"), "application/problem+json")
    operation: dict[str, Any] = {"summary": route.summary, "responses": {}}
    parameters = [_path_parameter(p) for p in route.path_parameters]
    if route.query is not None:
        parameters += _query_parameters(route.query)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            **_json(_ref(route.body.__name__)),
        }
    for status, (description, schema) in route.responses.items():
        if schema is None:
            content = {}
        elif schema == "Problem":
            content = problem
        else:
            content = _json(_ref(schema) if isinstance(schema, str) else schema, route.media)
        operation["responses"][str(status)] = {"description": description, **content}
        if route.location and 200 <= status < 300:
            operation["responses"][str(status)]["headers"] = {
                "Location": {"required": True, "schema": {"type": "string"}}
            }
    errors: dict[int, str] = {}
    if route.body is not None:
        errors |= {400: "The body is not a JSON object", 413: "The body is over 1 MiB"}
    if route.body is not None or route.query is not None:
        errors[422] = "Some fields are not valid"
    if route.path_parameters or route.not_found:
        errors[404] = "No such resource (or not yours)"
    if route.auth == "user":
        operation["security"] = [{"bearerAuth": []}]
    elif route.auth == "internal":
        operation["security"] = [{"internalToken": []}]
    else:
        operation["security"] = []
    if route.auth != "public":
        errors[401] = "Missing, expired or revoked access token"
    if route.rate is not None:
        errors[429] = "Rate limit reached; see Retry-After"
        # Every limited route reaches Postgres (or may, when Redis fails): it answers 503 while
        # Postgres, pgBouncer or the connection pool cannot.
        errors[503] = "The database cannot answer right now; see Retry-After"
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


def build_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The document of ``routes`` (those marked ``documented``); pure, so tests can compare it
    with the router. Fails when a route names a response schema the document does not define."""
    documented = [route for route in routes if route.documented]
    bodies = {route.body.__name__: route.body for route in documented if route.body is not None}
    schemas = _components(bodies.values())
    paths: dict[str, dict[str, Any]] = {}
    for route in documented:
        for status, (_, schema) in route.responses.items():
            if isinstance(schema, str) and schema not in schemas:
                raise ValueError(
                    f"{route.method} {route.path} answers {status} with an undefined schema {schema!r}"
                )
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "AlgoEdge API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "internalToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }


#: The document of the app's own route table, built once by ``create_app``.
DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document")


async def document(request: web.Request) -> web.Response:
    return render(request.app[DOCUMENT])


ROUTES = (
    Route(
        "GET",
        "/api/v1/openapi.json",
        document,
        summary="This document",
        responses={200: ("OK", {"type": "object"})},
        auth="public",
        rate=None,
    ),
)
