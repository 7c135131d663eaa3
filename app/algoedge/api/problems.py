"""RFC 9457 problem details: the one renderer of every error response the API sends."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from algoedge.api.io import Invalid, Malformed
from algoedge.auth import AuthError
from algoedge.db.errors import Conflict, NotFound

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    if isinstance(exc, web.HTTPException):
        skip = ("content-type", "content-length")
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in skip}
        detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
        return problem(exc.status, detail=detail, headers=headers)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return problem(500, detail="The server hit an unexpected error; it has been logged.")
