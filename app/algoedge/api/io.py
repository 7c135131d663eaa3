"""Request parsing and response rendering shared by every route: JSON bodies, query strings, cursors.

Malformed JSON is a 400, a body that does not fit its model a 422 naming each field, and pages are
keyset cursors (opaque url-safe base64 of the last row's sort key).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)

from algoedge.jsonable import to_jsonable

ModelT = TypeVar("ModelT", bound=BaseModel)
RowT = TypeVar("RowT")

DEFAULT_PAGE = 20
MAX_PAGE = 100


class Invalid(Exception):
    """A request that does not fit its model; rendered as 422 with every field's problem."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class Malformed(Exception):
    """A body that is not JSON (or not a JSON object); rendered as 400."""


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: object) -> datetime:
    """Only RFC 3339 text with a zone: no bare dates, no epoch numbers, no local times."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(
            "must be an RFC 3339 date-time with a time zone, like 2026-01-31T09:30:00Z"
        )
    try:
        # In UTC: Postgres refuses offsets beyond ±15:59 that RFC 3339 allows.
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("is not a representable point in time") from None


# A point in time in a query string, exactly as the OpenAPI document describes it.
Timestamp = Annotated[
    datetime, PlainValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})
]

# Postgres text cannot hold NUL; refusing it in the schema makes it a 422, never a 500.
NO_NUL = r"^[^\x00]*$"


class StrictModel(BaseModel):
    # Unknown fields are refused: a typo must not be silently ignored. Strings are taken as
    # sent (no stripping), so what the OpenAPI document allows is exactly what is accepted.
    model_config = ConfigDict(extra="forbid", frozen=True)


class PageQuery(StrictModel):
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200)


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "body",
            "message": error["msg"].removeprefix("Value error, "),
        }
        for error in exc.errors()
    ]


async def read_json(request: web.Request, model: type[ModelT], *, optional: bool = False) -> ModelT:
    """Parse and validate the JSON body; an empty body counts as ``{}`` when ``optional``."""
    raw = await request.read()  # over client_max_size raises 413 here
    if not raw.strip() and optional:
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Malformed("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise Malformed("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(_field_errors(exc)) from None


def read_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """Validate the query string; a parameter given twice is refused rather than guessed."""
    query: dict[str, str] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise Invalid([{"field": key, "message": "Give this parameter at most once"}])
        query[key] = values[0]
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        raise Invalid(_field_errors(exc)) from None


def encode_cursor(*key: Any) -> str:
    text = json.dumps([k.isoformat() if isinstance(k, datetime) else k for k in key])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_id_cursor(cursor: str | None) -> int | None:
    """The id of an id-ordered page's last row."""
    if cursor is None:
        return None
    key = _decode(cursor)
    if len(key) != 1 or not isinstance(key[0], int) or key[0] < 0:
        raise _bad_cursor()
    return int(key[0])


def decode_time_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The (created_at, id) of a newest-first page's last row."""
    if cursor is None:
        return None
    key = _decode(cursor)
    if len(key) != 2 or not isinstance(key[0], str) or not isinstance(key[1], int):
        raise _bad_cursor()
    try:
        created_at = datetime.fromisoformat(key[0])
    except ValueError:
        raise _bad_cursor() from None
    if created_at.tzinfo is None:
        raise _bad_cursor()
    return created_at, int(key[1])


def _decode(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _bad_cursor() from None
    if not isinstance(key, list):
        raise _bad_cursor()
    return key


def _bad_cursor() -> Invalid:
    return Invalid([{"field": "cursor", "message": "Not a cursor this API gave out"}])


def render(
    value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(to_jsonable(value), status=status, headers=headers)


def page(rows: Sequence[RowT], *, limit: int, cursor_of: Callable[[RowT], str]) -> dict[str, Any]:
    """A list response from ``limit + 1`` fetched rows: ``next_cursor`` is null on the last page."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return {"items": items, "next_cursor": cursor_of(items[-1]) if more else None}
