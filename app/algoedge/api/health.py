"""Liveness and readiness: /healthz says the process runs, /readyz that its dependencies answer."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from algoedge import cache
from algoedge.api.problems import problem
from algoedge.api.routes import Route
from algoedge.api.state import DATABASE, REDIS

log = logging.getLogger(__name__)

# A readiness probe that hangs is worse than one that fails: bound each dependency check.
_CHECK_TIMEOUT_SECONDS = 2.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks = {"postgres": app[DATABASE].ping(), "redis": cache.ping(app[REDIS])}
    results = await asyncio.gather(
        *(asyncio.wait_for(c, _CHECK_TIMEOUT_SECONDS) for c in checks.values()),
        return_exceptions=True,
    )
    failing = {}
    for name, result in zip(checks, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("readiness check %s failed: %r", name, result)
            failing[name] = type(result).__name__
    if failing:
        return problem(
            503,
            detail="Not ready: " + ", ".join(sorted(failing)) + " did not answer.",
            checks={name: failing.get(name, "ok") for name in checks},
        )
    return web.json_response({"status": "ready", "checks": dict.fromkeys(checks, "ok")})


# Probes are answered whoever asks and however often: the kubelet has no token and no budget.
ROUTES = (
    Route(
        "GET",
        "/healthz",
        healthz,
        summary="Liveness",
        responses={200: ("OK", "Health")},
        auth="public",
        rate=None,
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        summary="Readiness: Postgres and Redis answer",
        responses={200: ("OK", "Health"), 503: ("Not ready", "Problem")},
        auth="public",
        rate=None,
    ),
)
