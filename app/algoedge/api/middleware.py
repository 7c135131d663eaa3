"""Cross-cutting request handling: request ids, logs and metrics, identity, rate limits.

Each route's policy (who may call it, which budgets it spends) is read from its declaration in
the route table (:mod:`algoedge.api.routes`), never from lists of paths kept here; a route added
without a declaration is treated as strictly as possible (a user's token, default limits). The
headers the middlewares add (request id, rate limits, CORS) are decided before the handler runs
and put on the response when it is prepared (:func:`add_response_headers`), so a streamed
response, whose headers are sent before its handler returns, carries them as well.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from algoedge import logs
from algoedge.api.problems import problem, problem_middleware
from algoedge.api.routes import Auth, RateClass, declared_route
from algoedge.api.state import CLAIMS, LIMITER, PREFETCHED_SESSION, SESSIONS, SETTINGS, USER
from algoedge.auth import AuthError, PrefetchedSession, SessionPrefetch
from algoedge.metrics import HTTP_ERRORS, HTTP_REQUESTS
from algoedge.ratelimit import rate_limit_headers
from algoedge.rates import client_ip, client_network

log = logging.getLogger("algoedge.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


_RESPONSE_HEADERS: web.RequestKey[CIMultiDict[str]] = web.RequestKey(
    "response_headers", CIMultiDict
)


def respond_with(request: web.Request, headers: Mapping[str, str]) -> None:
    """Have the response to ``request``, whatever produces it, carry ``headers``."""
    if _RESPONSE_HEADERS not in request:
        request[_RESPONSE_HEADERS] = CIMultiDict()
    request[_RESPONSE_HEADERS].extend(headers)


async def add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the headers :func:`respond_with` collected, before any is sent."""
    if _RESPONSE_HEADERS in request:
        response.headers.extend(request[_RESPONSE_HEADERS])


class ForwardingWarning:
    """Warns once that requests arrive through a proxy (they carry X-Forwarded-For) while no
    proxy is trusted: then every client behind it shares the proxy's rate-limit buckets."""

    def __init__(self) -> None:
        self.warned = False

    def notice(self, request: web.Request) -> None:
        if self.warned or "X-Forwarded-For" not in request.headers:
            return
        if request.app[SETTINGS].trusted_proxies:
            return
        self.warned = True
        log.warning(
            "requests arrive with X-Forwarded-For but ALGOEDGE_TRUSTED_PROXIES is not set: the "
            "header is ignored, so every client behind that proxy shares its rate limits; set "
            "it to the proxies' CIDRs (this warning is not repeated)"
        )


PROXY_WARNING = web.AppKey("proxy_warning", ForwardingWarning)

_CLIENT_NETWORK: web.RequestKey[str] = web.RequestKey("client_network", str)


def client_network_of(request: web.Request) -> str:
    """The client's rate-limit subject: its address (every X-Forwarded-For line, as far as
    trusted proxies vouch), or its IPv6 /64."""
    if _CLIENT_NETWORK not in request:
        if PROXY_WARNING in request.app:
            request.app[PROXY_WARNING].notice(request)
        address = client_ip(
            request.remote,
            request.headers.getall("X-Forwarded-For", []),
            request.app[SETTINGS].trusted_proxies,
        )
        request[_CLIENT_NETWORK] = client_network(address)
    return request[_CLIENT_NETWORK]


# The latency histogram's children by label values: labels() costs twice an observe().
_REQUEST_HISTOGRAMS: dict[tuple[str, str, int], Any] = {}


def _request_histogram(route: str, method: str, status: int) -> Any:
    child = _REQUEST_HISTOGRAMS.get((route, method, status))
    if child is None:
        child = HTTP_REQUESTS.labels(route=route, method=method, status=str(status))
        _REQUEST_HISTOGRAMS[route, method, status] = child
    return child


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id (kept from X-Request-ID when sane), one JSON access log line, latency metrics."""
    incoming = request.headers.get("X-Request-ID", "")
    # 128 random bits in hex, like uuid4().hex, for a fifth of its cost.
    rid = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
    token = logs.request_id.set(rid)
    respond_with(request, {"X-Request-ID": rid})
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route(request)
        _request_histogram(route, request.method, status).observe(elapsed)
        if status >= 500:
            HTTP_ERRORS.labels(route=route).inc()
        if route not in ("/healthz", "/readyz", "/metrics"):
            log.info(
                "%s %s %d",
                request.method,
                request.path,
                status,
                extra={
                    "fields": {"status": status, "route": route, "ms": round(elapsed * 1000, 2)}
                },
            )
        logs.request_id.reset(token)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _auth_of(request: web.Request) -> Auth:
    # A route added without a declaration needs a user's token: safe by default.
    route = declared_route(request)
    return "user" if route is None else route.auth


def _rate_class_of(request: web.Request) -> RateClass | None:
    route = declared_route(request)
    return "default" if route is None else route.rate


@web.middleware
async def identity(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the access token of every user route, check the internal token of internal ones;
    401 when it is missing, wrong or dead."""
    # An unknown route or method answers 404/405 whoever asks.
    unmatched = request.match_info.http_exception is not None
    auth = _auth_of(request)
    if unmatched or auth == "public":
        return await handler(request)
    if auth == "internal":
        expected = request.app[SETTINGS].internal_token.get_secret_value()
        given = bearer_token(request.headers.get("Authorization")) or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise AuthError("This route needs the internal token.")
        return await handler(request)
    claims = request.get(CLAIMS)
    if claims is None:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise AuthError("This route needs an access token (Authorization: Bearer …).")
        claims = request.app[SESSIONS].decode(token)
        request[CLAIMS] = claims
    request[USER] = await request.app[SESSIONS].user_of(
        claims, prefetched=request.get(PREFETCHED_SESSION)
    )
    return await handler(request)


@web.middleware
async def rate_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One atomic Redis check of the user's and the client address's budgets; 429 when spent.

    The same round trip reads the token's session and user for the identity middleware, only
    once the budgets allowed the request: an authenticated request costs one Redis round trip.
    """
    route_class = _rate_class_of(request)
    if route_class is None:
        return await handler(request)
    settings = request.app[SETTINGS]
    network = client_network_of(request)
    prefetch: SessionPrefetch | None = None
    if route_class == "auth":
        limits = [(f"auth:{network}", settings.rate_limit_auth)]
    elif route_class == "socket":
        # Only a new engine.io connection is a handshake; its polls and upgrade name it (sid).
        if "sid" in request.query:
            return await handler(request)
        limits = [(f"socket:{network}", settings.rate_limit_socket)]
    else:
        limits = [(f"ip:{network}", settings.rate_limit_per_ip)]
        # Limiting runs before the session lookup (so revoked or forged tokens cannot drive
        # unlimited lookups); the signed token already names its user without any I/O.
        token = bearer_token(request.headers.get("Authorization"))
        if token is not None:
            try:
                claims = request.app[SESSIONS].decode(token)
            except AuthError:
                claims = None
            if claims is not None:
                request[CLAIMS] = claims
                limits.insert(0, (f"user:{claims.user_id}", settings.rate_limit_per_user))
                if _auth_of(request) == "user":
                    prefetch = request.app[SESSIONS].prefetch(claims)
    decision, values = await request.app[LIMITER].check_and_read(
        limits, prefetch.keys if prefetch is not None else ()
    )
    if prefetch is not None and values is not None:
        request[PREFETCHED_SESSION] = PrefetchedSession(prefetch, values[0], values[1])
    respond_with(request, rate_limit_headers(decision))
    if not decision.allowed:
        return problem(429, detail="Too many requests; retry after the time in Retry-After.")
    return await handler(request)


_CORS_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-ID",
    "Access-Control-Max-Age": "600",
}
# What a cross-origin script may read of a response besides the CORS-safelisted headers.
_CORS_EXPOSED = "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, X-Request-ID"


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS for ALGOEDGE_ALLOWED_ORIGINS: preflights answered here (never rate limited), and every
    answer to a listed origin, errors and 429s included, readable by its script. Tokens travel
    in the Authorization header, never in cookies, so credentials are not allowed."""
    allowed = request.app[SETTINGS].allowed_origins
    # engine.io checks the origin of socket.io requests itself (same list).
    if not allowed or request.path.startswith("/socket.io/"):
        return await handler(request)
    origin = request.headers.get("Origin")
    preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    if origin is not None and preflight:
        if origin not in allowed:
            return problem(403, detail="This origin may not call the API.")
        return web.Response(
            status=204,
            headers={**_CORS_PREFLIGHT, "Access-Control-Allow-Origin": origin, "Vary": "Origin"},
        )
    respond_with(request, {"Vary": "Origin"})
    if origin in allowed:
        respond_with(
            request,
            {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": _CORS_EXPOSED},
        )
    return await handler(request)


# Outermost first: the context sees every final status; CORS headers go on every answer to an
# allowed origin; rate limits run before any session lookup and put their headers on every
# answer, errors included, which the problem renderer has already turned into responses.
MIDDLEWARES = [request_context, cors, rate_limits, problem_middleware, identity]
