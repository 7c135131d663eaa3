"""Routes for the platform: /internal/v1/capacity (operator, bearer internal token) and /metrics,
both on the metrics listener only (``ALGOEDGE_METRICS_PORT``), never on the public port."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from algoedge.api.io import render
from algoedge.api.problems import problem
from algoedge.api.routes import Route
from algoedge.api.state import DATABASE, REDIS, SETTINGS
from algoedge.capacity import read_capacity
from algoedge.metrics import DB_POOL_CONNECTIONS

log = logging.getLogger(__name__)


async def capacity(request: web.Request) -> web.Response:
    try:
        result = await read_capacity(
            request.app[DATABASE], request.app[REDIS], queues=request.app[SETTINGS].worker_queues
        )
    except RedisError as exc:
        log.warning("capacity unavailable: %r", exc)
        return problem(503, detail="Redis is unavailable; capacity cannot be read right now.")
    return render(result)


async def metrics(request: web.Request) -> web.Response:
    stats = request.app[DATABASE].stats()
    DB_POOL_CONNECTIONS.labels(state="in_use").set(stats.in_use)
    DB_POOL_CONNECTIONS.labels(state="idle").set(stats.free)
    DB_POOL_CONNECTIONS.labels(state="max").set(stats.maxsize)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


# Neither is limited: the platform's scrapers and scalers poll on their own schedule.
ROUTES = (
    Route(
        "GET",
        "/internal/v1/capacity",
        capacity,
        summary="Demand for the operator's scalers (internal token)",
        responses={200: ("OK", "Capacity"), 503: ("Redis unavailable", "Problem")},
        auth="internal",
        rate=None,
        listener="metrics",
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        summary="Prometheus metrics",
        responses={200: ("OK", {"type": "string"})},
        auth="public",
        rate=None,
        media="text/plain",
        listener="metrics",
    ),
)
