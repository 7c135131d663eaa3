"""Liveness and readiness: /healthz says the process runs, /readyz that this pod can serve.

Readiness fails only on what this pod alone lacks: its Postgres pool. Redis is shared by every
pod, and every use of it has a fallback (sessions from Postgres, rate limits in memory, events
best effort), so a slow or lost Redis is reported in ``checks`` and the answer is "degraded",
never 503: failing readiness on it would take every pod out of the Service at once, and the
fallbacks would never serve. Liveness depends on nothing but the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web

from algoedge import cache
from algoedge.api.problems import problem
from algoedge.api.routes import Route
from algoedge.api.state import DATABASE, REDIS

log = logging.getLogger(__name__)

# A readiness probe that hangs is worse than one that fails: bound each dependency check.
_CHECK_TIMEOUT_SECONDS = 2.0
#: The checks whose failure makes this pod not ready; the others only degrade it.
REQUIRED: Final = frozenset({"postgres"})


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
    answers = {name: failing.get(name, "ok") for name in checks}
    if missing := sorted(REQUIRED & failing.keys()):
        return problem(
            503, detail=f"Not ready: {', '.join(missing)} did not answer.", checks=answers
        )
    return web.json_response({"status": "degraded" if failing else "ready", "checks": answers})


# Probes are answered whoever asks and however often: the kubelet has no token and no budget.
# Both listeners answer them, so either port can be probed.
ROUTES = (
    Route(
        "GET",
        "/healthz",
        healthz,
        summary="Liveness",
        responses={200: ("OK", "Health")},
        auth="public",
        rate=None,
        listener="both",
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        summary="Readiness: Postgres answers (Redis is reported, not required)",
        responses={200: ("OK", "Health"), 503: ("Not ready", "Problem")},
        auth="public",
        rate=None,
        listener="both",
    ),
)
