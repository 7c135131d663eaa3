"""HTTP routes: MetaAPI's provisioning REST API, /healthz, and the simulator's /admin endpoint.

One route table per audience (public, admin); handlers parse and validate, call the provisioning
service or the streaming hub, and render MetaAPI-shaped JSON.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from algoedge.metaapi_sim.errors import STATUS, error_body, too_many_requests
from algoedge.metaapi_sim.faults import REFUSAL_MESSAGES, Faults
from algoedge.metaapi_sim.observe import SubscriptionLog
from algoedge.metaapi_sim.provisioning import ApiError, Provisioning
from algoedge.metaapi_sim.settings import SimSettings
from algoedge.metaapi_sim.streaming import Streaming

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The hashing-ignored field lists MetaAPI's client API returns (fields left out of terminal hashes).
IGNORED_FIELDS = {
    "specification": ["description", "expirationTime", "expirationBrokerTime", "startTime", "startBrokerTime", "pipSize"],
    "position": [
        "time", "updateTime", "comment", "brokerComment", "originalComment", "clientId", "profit",
        "realizedProfit", "unrealizedProfit", "currentPrice", "currentTickValue", "accountCurrencyExchangeRate",
        "updateSequenceNumber",
    ],
    "order": [
        "time", "expirationTime", "comment", "brokerComment", "originalComment", "clientId", "currentPrice",
        "accountCurrencyExchangeRate", "updateSequenceNumber",
    ],
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Simulator:
    """Everything the handlers share."""

    settings: SimSettings
    provisioning: Provisioning
    streaming: Streaming
    faults: Faults
    subscriptions: SubscriptionLog


SIMULATOR = web.AppKey("simulator", Simulator)


def api_error(error: str, message: str, **extra: Any) -> ApiError:
    return ApiError(STATUS.get(error, 400), error_body(error, message, **extra))


def _render(exc: ApiError) -> web.Response:
    return web.json_response(exc.body, status=exc.status)


@web.middleware
async def metaapi_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure MetaAPI-shaped: ApiError, aiohttp's 404/405, and anything unexpected."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _render(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        name = {401: "UnauthorizedError", 403: "ForbiddenError", 404: "NotFoundError"}.get(
            exc.status, "ValidationError"
        )
        return web.json_response(error_body(name, exc.reason), status=exc.status)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return web.json_response(
            error_body("InternalError", "Internal simulator error"), status=500
        )


def metaapi_endpoint(handler: Handler) -> Handler:
    """A MetaAPI REST endpoint: checks auth-token, then injected latency and 429s."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIMULATOR]
        token = request.headers.get("auth-token") or request.query.get("auth-token") or ""
        if not hmac.compare_digest(token.encode(), sim.settings.token.get_secret_value().encode()):
            raise api_error("UnauthorizedError", "Authorization token invalid")
        delay_ms = sim.settings.latency_ms + sim.faults.latency_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if sim.faults.throttled():
            body = too_many_requests(sim.streaming.clock(), sim.faults.throttle_retry_seconds)
            return web.json_response(body, status=429)
        return await handler(request)

    return wrapped


async def _json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    try:
        return await request.json()
    except json.JSONDecodeError:
        raise api_error(
            "ValidationError",
            "Validation failed",
            details=[{"parameter": "body", "message": "is not valid JSON"}],
        ) from None


async def healthz(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    return web.json_response(
        {
            "status": "ok",
            "accounts": len(sim.provisioning.accounts),
            "sockets": len(sim.streaming.sockets),
        }
    )


@metaapi_endpoint
async def create_account(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    account = sim.provisioning.create(
        await _json_body(request), request.headers.get("transaction-id")
    )
    return web.json_response({"id": account.id, "state": account.state}, status=201)


@metaapi_endpoint
async def list_accounts(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "1000"))
    except ValueError:
        raise api_error("ValidationError", "offset and limit must be integers") from None
    if offset < 0 or not 1 <= limit <= 1000:
        raise api_error("ValidationError", "offset must be >= 0 and limit from 1 to 1000")
    states = set(request.query.getall("state", []))
    items = [
        a.to_json() for a in sim.provisioning.accounts.values() if not states or a.state in states
    ]
    return web.json_response(items[offset : offset + limit])


@metaapi_endpoint
async def get_account(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    return web.json_response(sim.provisioning.get(request.match_info["account_id"]).to_json())


@metaapi_endpoint
async def deploy_account(request: web.Request) -> web.Response:
    request.app[SIMULATOR].provisioning.deploy(request.match_info["account_id"])
    return web.Response(status=204)


@metaapi_endpoint
async def undeploy_account(request: web.Request) -> web.Response:
    request.app[SIMULATOR].provisioning.undeploy(request.match_info["account_id"])
    return web.Response(status=204)


@metaapi_endpoint
async def delete_account(request: web.Request) -> web.Response:
    request.app[SIMULATOR].provisioning.delete(request.match_info["account_id"])
    return web.Response(status=204)


@metaapi_endpoint
async def hashing_ignored_field_lists(request: web.Request) -> web.Response:
    return web.json_response({"g1": IGNORED_FIELDS, "g2": IGNORED_FIELDS})


# -- admin -------------------------------------------------------------------------------------
def admin_endpoint(handler: Handler) -> Handler:
    """Loopback peers only (unless ALGOEDGE_SIM_ADMIN_REMOTE), with the admin bearer token."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIMULATOR]
        peer = request.remote or ""
        try:
            loopback = ipaddress.ip_address(peer).is_loopback
        except ValueError:
            loopback = False
        if not (loopback or sim.settings.admin_remote):
            raise api_error("ForbiddenError", "The admin endpoint only answers loopback peers")
        expected = f"Bearer {sim.settings.admin_secret()}"
        if not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), expected.encode()
        ):
            raise api_error("UnauthorizedError", "Admin bearer token invalid")
        return await handler(request)

    return wrapped


async def _admin_object(request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise api_error("ValidationError", "The body must be a JSON object")
    return body


def _number(body: dict[str, Any], name: str, *, low: float, high: float, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise api_error(
            "ValidationError",
            "Validation failed",
            details=[
                {
                    "parameter": name,
                    "value": value,
                    "message": f"must be a number from {low} to {high}",
                }
            ],
        )
    return float(value)


@admin_endpoint
async def admin_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIMULATOR].faults.to_json())


@admin_endpoint
async def admin_reset_faults(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    for account_id in list(sim.faults.refused_accounts):
        sim.provisioning.restore(account_id)
    sim.faults.reset()
    return web.json_response(sim.faults.to_json())


@admin_endpoint
async def admin_drop_sockets(request: web.Request) -> web.Response:
    dropped = await request.app[SIMULATOR].streaming.drop_all()
    return web.json_response({"dropped": dropped})


@admin_endpoint
async def admin_too_many_requests(request: web.Request) -> web.Response:
    sim, body = request.app[SIMULATOR], await _admin_object(request)
    sim.faults.throttle_fraction = _number(body, "fraction", low=0, high=1, default=1)
    sim.faults.throttle_retry_seconds = _number(
        body, "retryAfterSeconds", low=0, high=3600, default=1
    )
    return web.json_response(sim.faults.to_json())


@admin_endpoint
async def admin_latency(request: web.Request) -> web.Response:
    sim, body = request.app[SIMULATOR], await _admin_object(request)
    sim.faults.latency_ms = int(_number(body, "ms", low=0, high=60000, default=0))
    return web.json_response(sim.faults.to_json())


@admin_endpoint
async def admin_refuse(request: web.Request) -> web.Response:
    """Refuse an account's credentials (E_AUTH) or a server (E_SRV_NOT_FOUND)."""
    sim, body = request.app[SIMULATOR], await _admin_object(request)
    reason = body.get("reason", "E_AUTH")
    if reason not in REFUSAL_MESSAGES:
        raise api_error("ValidationError", "reason must be E_AUTH or E_SRV_NOT_FOUND")
    account_id, server = body.get("accountId"), body.get("server")
    if reason == "E_AUTH" and isinstance(account_id, str):
        sim.provisioning.get(account_id)
        sim.faults.refused_accounts[account_id] = "E_AUTH"
        await sim.provisioning.refuse(account_id, reason)
    elif reason == "E_SRV_NOT_FOUND" and isinstance(server, str) and server:
        sim.faults.refused_servers.add(server)
        for account in list(sim.provisioning.accounts.values()):
            if account.spec.server == server:
                await sim.provisioning.refuse(account.id, reason)
    else:
        raise api_error("ValidationError", "E_AUTH needs accountId; E_SRV_NOT_FOUND needs server")
    return web.json_response(sim.faults.to_json())


@admin_endpoint
async def admin_stall(request: web.Request) -> web.Response:
    sim, body = request.app[SIMULATOR], await _admin_object(request)
    socket_id, account_id = body.get("socketId"), body.get("accountId")
    if not isinstance(socket_id, str) and not isinstance(account_id, str):
        raise api_error("ValidationError", "Give socketId or accountId")
    stalled = sim.streaming.stall(
        socket_id=socket_id if isinstance(socket_id, str) else None,
        account_id=account_id if isinstance(account_id, str) else None,
    )
    return web.json_response({"stalled": stalled})


@admin_endpoint
async def admin_subscriptions(request: web.Request) -> web.Response:
    """The subscription log, optionally for one account."""
    sim = request.app[SIMULATOR]
    account_id = request.query.get("accountId")
    records = [r.to_json() for r in sim.subscriptions.records if account_id in (None, r.account_id)]
    return web.json_response(records)


@admin_endpoint
async def admin_stats(request: web.Request) -> web.Response:
    """Per account, the most subscriptions open at once; per socket, how many accounts it carries."""
    sim = request.app[SIMULATOR]
    account_ids = sorted({r.account_id for r in sim.subscriptions.records})
    return web.json_response(
        {
            "accounts": [sim.subscriptions.max_open(a) for a in account_ids],
            "sockets": sim.subscriptions.per_socket(),
        }
    )


PUBLIC_ROUTES = [
    web.get("/healthz", healthz),
    web.post("/users/current/accounts", create_account),
    web.get("/users/current/accounts", list_accounts),
    web.get("/users/current/accounts/{account_id}", get_account),
    web.delete("/users/current/accounts/{account_id}", delete_account),
    web.post("/users/current/accounts/{account_id}/deploy", deploy_account),
    web.post("/users/current/accounts/{account_id}/undeploy", undeploy_account),
    # The SDK's client API host is "<base>/client-api" + ".<region>.<domain>".
    web.get(
        "/{client_api:client-api[^/]*}/hashing-ignored-field-lists", hashing_ignored_field_lists
    ),
]
ADMIN_ROUTES = [
    web.get("/admin/faults", admin_faults),
    web.delete("/admin/faults", admin_reset_faults),
    web.post("/admin/faults/drop-sockets", admin_drop_sockets),
    web.put("/admin/faults/too-many-requests", admin_too_many_requests),
    web.put("/admin/faults/latency", admin_latency),
    web.post("/admin/faults/refuse", admin_refuse),
    web.post("/admin/faults/stall", admin_stall),
    web.get("/admin/subscriptions", admin_subscriptions),
    web.get("/admin/stats", admin_stats),
]
