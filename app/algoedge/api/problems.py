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
    except Invalid as exc:
        return problem(422, detail="Some fields are not valid.", errors=exc.errors)
    except Malformed as exc:
        return problem(400, detail=str(exc))
    except NotFound:
        return problem(404, detail="No such resource.")
    except Conflict as exc:
        return problem(409, detail=str(exc))
    except AuthError as exc:
        return problem(
            401, detail=str(exc), headers={"WWW-Authenticate": 'Bearer realm="algoedge"'}
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        skip = ("content-type", "content-length")
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in skip}
        detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
        return problem(exc.status, detail=detail, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, detail="The server hit an unexpected error; it has been logged.")
