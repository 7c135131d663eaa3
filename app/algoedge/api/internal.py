"""Routes for the platform: /internal/v1/capacity (operator, bearer internal token) and /metrics."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from algoedge.api.io import render
from algoedge.api.middleware import bearer_token, public, rate_class
from algoedge.api.problems import problem
from algoedge.api.state import DATABASE, REDIS, SETTINGS
from algoedge.auth import AuthError
from algoedge.capacity import read_capacity
from algoedge.metrics import DB_POOL_CONNECTIONS

log = logging.getLogger(__name__)


@public  # not a user route: it has its own token, checked below
@rate_class(None)
async def capacity(request: web.Request) -> web.Response:
    expected = request.app[SETTINGS].internal_token.get_secret_value()
    given = bearer_token(request.headers.get("Authorization")) or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise AuthError("This route needs the internal token.")
    try:
        result = await read_capacity(
            request.app[DATABASE], request.app[REDIS], queues=request.app[SETTINGS].worker_queues
        )
    except RedisError as exc:
        log.warning("capacity unavailable: %r", exc)
        return problem(503, detail="Redis is unavailable; capacity cannot be read right now.")
    return render(result)


@public
@rate_class(None)
async def metrics(request: web.Request) -> web.Response:
    stats = request.app[DATABASE].stats()
    DB_POOL_CONNECTIONS.labels(state="in_use").set(stats.in_use)
    DB_POOL_CONNECTIONS.labels(state="idle").set(stats.free)
    DB_POOL_CONNECTIONS.labels(state="max").set(stats.maxsize)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/internal/v1/capacity", capacity)
    app.router.add_get("/metrics", metrics)
