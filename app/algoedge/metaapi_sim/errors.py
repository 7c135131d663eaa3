"""MetaAPI's error bodies: ``{id, error, message, details?, metadata?}``, for REST and socket.io alike."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from algoedge.metaapi_sim.broker import iso

#: HTTP status of each MetaAPI error name (what the SDK's http_client maps back to exceptions).
STATUS = {
    "ValidationError": 400,
    "UnauthorizedError": 401,
    "ForbiddenError": 403,
    "NotFoundError": 404,
    "ConflictError": 409,
    "TooManyRequestsError": 429,
    "InternalError": 500,
}


def error_body(
    error: str, message: str, *, details: Any = None, metadata: Any = None
) -> dict[str, Any]:
    """The JSON MetaAPI answers a failed request with."""
    body: dict[str, Any] = {"id": 1, "error": error, "message": message}
    if details is not None:
        body["details"] = details
    if metadata is not None:
        body["metadata"] = metadata
    return body


def too_many_requests(now: datetime, retry_after: float) -> dict[str, Any]:
    """A 429 body with the recommended retry time the SDK sleeps until."""
    return error_body(
        "TooManyRequestsError",
        "The request rate limit is exceeded (injected by the simulator); retry after the recommended time",
        metadata={
            "periodInMinutes": 1,
            "requestsPerPeriodAllowed": 0,
            "recommendedRetryTime": iso(now + timedelta(seconds=retry_after)),
            "type": "LIMIT_REQUEST_RATE_PER_USER",
        },
    )
