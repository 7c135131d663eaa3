"""The API application factory: shared resources opened and closed in cleanup contexts, routes wired."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from algoedge.api import (
    accounts,
    auth,
    health,
    internal,
    marketplace,
    me,
    notifications,
    openapi,
    reports,
    trades,
)
from algoedge.api.bridge_wake import BridgeWake
from algoedge.api.looplag import GcPauses, measure_loop_lag_forever, tune_gc
from algoedge.api.middleware import (
    MIDDLEWARES,
    PROXY_WARNING,
    ForwardingWarning,
    add_response_headers,
)
from algoedge.api.routes import Route, add_routes
from algoedge.api.state import (
    BRIDGE_WAKE,
    CIPHER,
    DATABASE,
    JOBS,
    LIMITER,
    LISTINGS,
    OUTBOX,
    PASSWORDS,
    REDIS,
    SESSIONS,
    SETTINGS,
    SOCKETS,
)
from algoedge.auth import Passwords, Sessions, Tokens
from algoedge.cache import REDIS_TIMEOUT_SECONDS, connect_redis
from algoedge.cancellation import stop_tasks
from algoedge.config import ApiSettings
from algoedge.credentials import CredentialsCipher
from algoedge.db import Database
from algoedge.jobs.queue import JobQueue
from algoedge.listings import Listings
from algoedge.logins import AccountLimit
from algoedge.metrics import zero_route_errors
from algoedge.outbox import Outbox
from algoedge.ratelimit import RateLimiter
from algoedge.realtime import Sockets
from algoedge.redis_pipeline import PipelinedRedis

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


async def socketio_endpoint(request: web.Request) -> web.StreamResponse:
    response: web.StreamResponse = await request.app[SOCKETS].server.handle_request(request)
    return response


# Registered as routes rather than by sio.attach() so they carry their policy: the socket
# authenticates in its connect handler, and each new connection (an engine.io handshake) spends
# its client address's socket budget, while the long-lived connection itself is not limited.
# engine.io's protocol is socket.io's to describe, not the HTTP API's document.
_SOCKET_ROUTES = tuple(
    Route(
        method,
        "/socket.io/",
        socketio_endpoint,
        summary="socket.io (engine.io polling and WebSocket upgrade)",
        responses={},
        auth="public",
        rate="socket",
        documented=False,
        head=False,
    )
    for method in ("GET", "POST")
)

#: Every route of the API, as the router registers them and the OpenAPI document describes them.
API_ROUTES: tuple[Route, ...] = (
    *health.ROUTES,
    *internal.ROUTES,
    *auth.ROUTES,
    *me.ROUTES,
    *accounts.ROUTES,
    *trades.ROUTES,
    *reports.ROUTES,
    *notifications.ROUTES,
    *marketplace.ROUTES,
    *openapi.ROUTES,
    *_SOCKET_ROUTES,
)


async def _database(app: web.Application) -> AsyncIterator[None]:
    app[DATABASE] = await Database.connect(app[SETTINGS])
    yield
    await app[DATABASE].close()


async def _passwords(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[PASSWORDS] = Passwords(
        concurrency=settings.password_hash_concurrency, queue=settings.password_hash_queue
    )
    yield
    app[PASSWORDS].close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis: Redis = connect_redis(settings)
    app[REDIS] = redis
    # Every request's one Redis command (the limiter's script) goes through one pipelined
    # connection; redis-py costs several times its CPU per command (docs/benchmarks.md).
    per_request = PipelinedRedis.from_url(settings.redis_url, timeout_seconds=REDIS_TIMEOUT_SECONDS)
    limiter = RateLimiter(per_request)
    app[LIMITER] = limiter
    app[LISTINGS] = Listings(redis)
    app[BRIDGE_WAKE] = BridgeWake(redis, app[OUTBOX])
    app[SESSIONS] = Sessions(
        db=app[DATABASE],
        redis=redis,
        tokens=Tokens(
            settings.jwt_secret.get_secret_value(), ttl_seconds=settings.access_token_ttl
        ),
        user_cache_ttl=settings.user_cache_ttl,
        passwords=app[PASSWORDS],
        account_limit=AccountLimit(limiter=limiter, redis=redis, limit=settings.rate_limit_account),
    )
    yield
    await per_request.aclose()
    await redis.aclose()


async def _jobs(app: web.Application) -> AsyncIterator[None]:
    # Connects lazily, on the first task sent; the API only sends, it never runs tasks.
    app[JOBS] = JobQueue.from_settings(app[SETTINGS])
    yield
    # Closing the broker connections may touch their sockets: off the event loop.
    await asyncio.to_thread(app[JOBS].close)


async def _background(app: web.Application) -> AsyncIterator[None]:
    sockets = app[SOCKETS]
    await sockets.start()
    gc_pauses = GcPauses()
    gc_pauses.install()
    tasks = [
        asyncio.create_task(measure_loop_lag_forever(), name="event-loop-lag"),
        asyncio.create_task(
            sockets.check_sessions_forever(app[SETTINGS].socketio_session_check_interval),
            name="socket-session-checks",
        ),
        asyncio.create_task(
            sockets.report_count_forever(f"{socket.gethostname()}:{os.getpid()}"),
            name="socket-count",
        ),
        asyncio.create_task(app[OUTBOX].run(), name="outbox"),
        asyncio.create_task(app[SESSIONS].retry_pending_forever(), name="redis-pending-deletes"),
    ]
    yield
    # Events of the last requests still go out, for a moment; Redis closes after this.
    await app[OUTBOX].flush(within=2.0)
    await stop_tasks(tasks)
    await sockets.stop()
    gc_pauses.uninstall()


async def _close_sockets(app: web.Application) -> None:
    # on_shutdown runs before the HTTP server waits for open handlers: close the sockets now
    # (clients reconnect, to another pod) instead of holding the shutdown for the whole grace
    # period. AsyncServer.shutdown() alone only stops background tasks.
    await app[SOCKETS].close_all()


def create_app(settings: ApiSettings) -> web.Application:
    """Build the API; nothing connects until the app starts (cleanup contexts)."""
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[CIPHER] = CredentialsCipher(settings.credentials_key.get_secret_value())
    app[PROXY_WARNING] = ForwardingWarning()
    app[OUTBOX] = Outbox()
    app[SOCKETS] = Sockets(
        redis_url=settings.redis_url,
        transports=settings.socketio_transports.split(","),
        allowed_origins=settings.allowed_origins,
        connect_timeout=settings.socketio_connect_timeout,
        outbox=app[OUTBOX],
        sessions=lambda: app[SESSIONS],
        redis=lambda: app[REDIS],
    )
    add_routes(app, API_ROUTES, metrics_port=settings.metrics_port)
    zero_route_errors([*(r.canonical for r in app.router.resources()), "unmatched"])
    app[openapi.DOCUMENT] = openapi.build_document(API_ROUTES)
    app.cleanup_ctx.extend([_database, _passwords, _redis, _jobs, _background])
    app.on_response_prepare.append(add_response_headers)
    app.on_shutdown.append(_close_sockets)
    return app


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit: every socket.io client holds a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def metrics_socket(host: str, port: int) -> socket.socket:
    """A listening socket for the metrics listener (``web.run_app`` binds only one port itself)."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address, family=family, backlog=128)


def run(settings: ApiSettings) -> None:
    """Serve until SIGTERM/SIGINT; aiohttp then stops accepting on both listeners and drains
    in-flight requests. The public port serves the API and socket.io; the metrics port /metrics
    and /internal/v1/* (routes.Listener); both answer the probes."""
    log.info("open file limit %d", raise_open_file_limit())
    log.info(
        "API listening on %s:%d, metrics and internal routes on :%s",
        settings.http_host,
        settings.http_port,
        settings.metrics_port or "off",
    )
    app = create_app(settings)
    # The process's garbage-collection policy, here rather than in the app: tests build many apps
    # in one process.
    tune_gc()
    web.run_app(
        app,
        host=settings.http_host,
        port=settings.http_port,
        sock=metrics_socket(settings.http_host, settings.metrics_port)
        if settings.metrics_port
        else None,
        shutdown_timeout=20.0,
        access_log=None,
        print=None,
    )
