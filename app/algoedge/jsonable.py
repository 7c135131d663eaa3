"""Turning domain records into JSON-ready values, in one place for responses and caches."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Dataclasses, datetimes (ISO 8601) and Decimals (as strings: money keeps its digits)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [to_jsonable(v) for v in value]
    return value


def encode_default(value: Any) -> Any:
    """orjson's ``default``: what orjson leaves to the caller, as :func:`to_jsonable` renders it
    (Decimals as strings; dataclasses, datetimes, tuples and non-string keys orjson renders
    itself the same way). ``tests/unit/test_jsonable.py`` holds the two equal."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
