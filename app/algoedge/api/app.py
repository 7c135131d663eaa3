"""The API application factory: shared resources opened and closed in cleanup contexts, routes wired."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from algoedge.api import health
from algoedge.api.problems import problem_middleware
from algoedge.api.state import DATABASE, REDIS, SETTINGS
from algoedge.cache import connect_redis
from algoedge.config import ApiSettings
from algoedge.db import Database

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    app[DATABASE] = await Database.connect(app[SETTINGS])
    yield
    await app[DATABASE].close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    redis: Redis = connect_redis(app[SETTINGS])
    app[REDIS] = redis
    yield
    await redis.aclose()


def create_app(settings: ApiSettings) -> web.Application:
    """Build the API; nothing connects until the app starts (cleanup contexts)."""
    app = web.Application(middlewares=[problem_middleware], client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_database, _redis])
    health.add_routes(app)
    return app


def run(settings: ApiSettings) -> None:
    """Serve until SIGTERM/SIGINT; aiohttp then stops accepting and drains in-flight requests."""
    log.info("API listening on %s:%d", settings.http_host, settings.http_port)
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout=20.0,
        access_log=None,
        print=None,
    )
