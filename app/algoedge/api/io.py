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
from datetime import UTC, date, datetime
from typing import Annotated, Any, Protocol, TypeVar

from aiohttp import web
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)
from pydantic.config import JsonDict

from algoedge.db.errors import NotFound
from algoedge.jsonbody import encode_json

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


def _iso_date(value: object) -> date:
    """Only a calendar date as YYYY-MM-DD text: no times, no numbers, no other digits."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a date like 2026-01-31")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("is not a calendar date") from None


# A calendar date in a body or query string, exactly as the OpenAPI document describes it.
IsoDate = Annotated[
    date, PlainValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date"})
]


def _query_bool(value: object) -> bool:
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


# A boolean in a query string: exactly "true" or "false", as the document's boolean is written.
QueryBool = Annotated[bool, PlainValidator(_query_bool), WithJsonSchema({"type": "boolean"})]


def _present(value: object) -> object:
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


#: For a field typed ``T | None`` whose None means "not given": an explicit null is refused
#: (a client that sends null most likely means something this API cannot do). Pair it with
#: ``WithJsonSchema`` of T and a default of :func:`omitted`, so the document shows plain T.
NOT_NULL = BeforeValidator(_present)


def _drop_default(schema: JsonDict) -> None:
    schema.pop("default", None)


def omitted() -> Any:
    """The default of a ``NOT_NULL`` field: None, left out of the document."""
    return Field(default=None, json_schema_extra=_drop_default)


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
        except RecursionError:
            # The parser recurses per level: nesting a few thousand deep exhausts the stack
            # (no body this API takes is nested more than two levels).
            raise Malformed("The request body is nested too deeply.") from None
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


def path_id(request: web.Request, name: str) -> int:
    """A row id from the path; anything that cannot be one is a 404 like an unknown id."""
    raw = request.match_info[name]
    # isascii: str.isdigit() also holds for digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(raw)
    return int(raw)


#: Row ids are Postgres bigints.
MAX_ROW_ID = 2**63 - 1


def _is_row_id(value: object) -> bool:
    # bool is an int to Python (JSON true would pass), never to Postgres.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ROW_ID


def encode_cursor(*key: Any) -> str:
    text = json.dumps([k.isoformat() if isinstance(k, datetime) else k for k in key])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_id_cursor(cursor: str | None) -> int | None:
    """The id of an id-ordered page's last row."""
    if cursor is None:
        return None
    key = _decode(cursor)
    if len(key) != 1 or not _is_row_id(key[0]):
        raise _bad_cursor()
    return int(key[0])


class TimeKeyed(Protocol):
    """A row of a newest-first page, keyed by (created_at, id)."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> int: ...


def time_cursor(row: TimeKeyed) -> str:
    """The cursor after ``row`` in a newest-first page; :func:`decode_time_cursor` reads it.

    Always in UTC, whatever the database session's time zone, so a cursor has one spelling."""
    return encode_cursor(row.created_at.astimezone(UTC), row.id)


def decode_time_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The (created_at, id) of a newest-first page's last row.

    Only a cursor exactly as :func:`time_cursor` writes it is taken: a UTC instant and a row id.
    Anything else (another offset, "Z", more than microseconds, an id beyond bigint) is refused
    here, rather than left for Python and Postgres to read differently: Postgres refuses
    offsets beyond ±15:59 that Python accepts.
    """
    if cursor is None:
        return None
    key = _decode(cursor)
    if len(key) != 2 or not isinstance(key[0], str) or not _is_row_id(key[1]):
        raise _bad_cursor()
    try:
        created_at = datetime.fromisoformat(key[0])
    except ValueError:
        raise _bad_cursor() from None
    if created_at.tzinfo is None or created_at.utcoffset() or created_at.isoformat() != key[0]:
        raise _bad_cursor()
    return created_at.astimezone(UTC), int(key[1])


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
    return render_encoded(encode_json(value), status=status, headers=headers)


def render_encoded(
    body: bytes, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A response whose JSON body is already encoded (a cached listing page, say)."""
    return web.Response(
        body=body, status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


def page(rows: Sequence[RowT], *, limit: int, cursor_of: Callable[[RowT], str]) -> dict[str, Any]:
    """A list response from ``limit + 1`` fetched rows: ``next_cursor`` is null on the last page."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return {"items": items, "next_cursor": cursor_of(items[-1]) if more else None}
