"""RFC 9457 problem details: the one renderer of every error response the API sends."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

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
    """Turn aiohttp's HTTP exceptions and unexpected errors into problem+json."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            k: v
            for k, v in exc.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
        return problem(exc.status, detail=detail, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, detail="The server hit an unexpected error; it has been logged.")
