"""RFC 9457 problem details: the one renderer of every error response the API sends."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from algoedge.api.io import Invalid, Malformed
from algoedge.auth import AuthError, HashingBusy
from algoedge.db.errors import DATABASE_UNAVAILABLE, Conflict, NotFound
from algoedge.logins import TooManyFailures

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Seconds a client is asked to wait when Postgres (or pgBouncer, or the pool) cannot answer.
DATABASE_RETRY_AFTER_SECONDS = 5
#: An outage fails every request: one warning line per this many seconds, not one per request.
_OUTAGE_LOG_INTERVAL_SECONDS = 30.0


class _OutageLog:
    """One warning (no traceback) per interval while the database is unavailable, with how many
    requests were answered 503 since the last one; each is also in the access log."""

    def __init__(self) -> None:
        self._last = -_OUTAGE_LOG_INTERVAL_SECONDS
        self._since = 0

    def record(self, request: web.Request, exc: BaseException) -> None:
        self._since += 1
        now = time.monotonic()
        if now - self._last < _OUTAGE_LOG_INTERVAL_SECONDS:
            return
        log.warning(
            "database unavailable or too slow (%s: %s) on %s %s; %d requests answered 503 since "
            "the last warning (repeated at most every %.0f s)",
            type(exc).__name__,
            str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            request.method,
            request.path,
            self._since,
            _OUTAGE_LOG_INTERVAL_SECONDS,
        )
        self._last, self._since = now, 0


_OUTAGES = _OutageLog()


def problem(
    status: int, *, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """A problem+json response; ``title`` is the standard phrase of ``status``."""
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase}
    body["status"] = status
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.json_response(body, status=status, content_type=PROBLEM_JSON, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors, aiohttp's HTTP exceptions and unexpected errors into problem+json."""
    try:
        return await handler(request)
    except Exception as exc:
        redirect = isinstance(exc, web.HTTPException) and exc.status < 400
        # Once a streamed response has sent its status and part of its body no problem can
        # follow: aiohttp then logs the error and drops the connection, so the client sees a
        # broken transfer rather than a complete-looking one.
        if redirect or request.writer.output_size > 0:
            raise
        return _problem_of(request, exc)


def _problem_of(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, Invalid):
        return problem(422, detail="Some fields are not valid.", errors=exc.errors)
    if isinstance(exc, Malformed):
        return problem(400, detail=str(exc))
    if isinstance(exc, NotFound):
        return problem(404, detail="No such resource.")
    if isinstance(exc, Conflict):
        return problem(409, detail=str(exc))
    if isinstance(exc, AuthError):
        return problem(
            401, detail=str(exc), headers={"WWW-Authenticate": 'Bearer realm="algoedge"'}
        )
    if isinstance(exc, TooManyFailures):
        return problem(429, detail=str(exc), headers={"Retry-After": str(exc.retry_after_seconds)})
    if isinstance(exc, HashingBusy):
        return problem(
            503,
            detail="Too many logins and registrations at once; retry after Retry-After.",
            headers={"Retry-After": str(exc.retry_after_seconds)},
        )
    if isinstance(exc, DATABASE_UNAVAILABLE):
        _OUTAGES.record(request, exc)
        return problem(
            503,
            detail="The database cannot answer right now; retry after Retry-After.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, web.HTTPException):
        skip = ("content-type", "content-length")
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in skip}
        detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
        return problem(exc.status, detail=detail, headers=headers)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return problem(500, detail="The server hit an unexpected error; it has been logged.")
