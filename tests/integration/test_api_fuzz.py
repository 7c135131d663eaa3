"""Crafted input on every route: path ids, cursors, timestamps and deeply nested JSON bodies must be
refused with a 4xx problem+json, never a 5xx (the generated run in test_api_schema.py does not
reach these: its path ids are schema-valid integers and it cannot build a cursor)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from algoedge.api.app import API_ROUTES
from algoedge.api.problems import PROBLEM_JSON
from algoedge.api.routes import Route
from yarl import URL

from tests.integration.conftest import ApiClient

# Path segments as a client may send them (already percent-encoded where needed).
PATH_IDS = [
    "0",
    "-1",
    "+1",
    "1.5",
    "1e3",
    "0x10",
    "9" * 18,
    "9223372036854775807",
    "9223372036854775808",
    "9" * 40,
    "-" + "9" * 40,
    "%00",
    "1%00",
    "%C3%A9",  # é
    "%EF%BC%91",  # fullwidth digit one
    "%D9%A1",  # Arabic-Indic digit one
    "%C2%B2",  # superscript two
    "%FF",  # not UTF-8
    "%20",
    "1%0A",
    "..%2F1",
    "%25",
]

# Instants at the edges of what RFC 3339, Python and Postgres can each represent.
ODD_TIMES = [
    "2026-01-31T09:30:00Z",
    "2026-01-31T09:30:00z",
    "2026-01-31T09:30:00+14:00",
    "2026-01-31T09:30:00-23:59",
    "2026-01-31T09:30:00+23:59",
    "2026-01-31T09:30:00+00:00:30",
    "2026-01-31T09:30:00.123456789Z",
    "2026-01-31T09:30:00.1234567+00:00",
    "2026-01-31T09:30:00,5Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-23:59",
    "9999-12-31T23:59:59+14:00",
    "10000-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-31T24:00:00Z",
    "2026-01-31T23:59:60Z",
    "2026-01-31T09:30:00",
    "2026-01-31",
    "infinity",
    "-infinity",
    "NaN",
    "",
]

BIG_IDS: list[Any] = [-1, 2**63, 10**40, -(10**40), 1.5, 1e308, True, None, "1"]


def _cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _raw_cursors() -> Iterator[str]:
    yield from ["", "=", "!!!!", "%00", "a" * 200, "bnVsbA", "e30", "W10"]
    yield _cursor([[[[1]]]])
    yield base64.urlsafe_b64encode(b"\xff\xfe").decode()
    yield base64.urlsafe_b64encode(b"[" * 100).decode()[:200]


def _id_cursors() -> Iterator[str]:
    for value in BIG_IDS:
        yield _cursor([value])


def _time_cursors() -> Iterator[str]:
    for when in ODD_TIMES:
        for value in (1, 2**63 - 1, 2**63, -1, 10**40):
            yield _cursor([when, value])
    yield _cursor(["2026-01-31T09:30:00Z", 1.5])
    yield _cursor([1700000000, 1])


def _timestamp_fields(route: Route) -> list[str]:
    """The query parameters the document describes as date-times."""
    if route.query is None:
        return []
    properties = route.query.model_json_schema()["properties"]
    return [
        name
        for name, schema in properties.items()
        if any(s.get("format") == "date-time" for s in [schema, *schema.get("anyOf", [])])
    ]


def _concrete(path: str, value: str = "1") -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def _documented(predicate: Any) -> list[Route]:
    return [r for r in API_ROUTES if r.documented and predicate(r)]


def _name(route: Route) -> str:
    return f"{route.method} {route.path}"


async def _answer(
    api: ApiClient, method: str, raw_path_and_query: str, token: str, **kwargs: Any
) -> tuple[int, str, str]:
    url = URL(api.base_url + raw_path_and_query, encoded=True)
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    async with api.session.request(method, url, headers=headers, **kwargs) as response:
        return response.status, response.content_type, await response.text()


def _problems(
    answers: list[tuple[str, int, str, str]], *, allowed: frozenset[int] = frozenset()
) -> list[str]:
    """Every answer that is a 5xx, or an error that is not problem+json."""
    bad = []
    for what, status, media, text in answers:
        if status in allowed:
            continue
        if status >= 500 or status < 400 or media != PROBLEM_JSON:
            bad.append(f"{what}: {status} {media} {text[:200]}")
    return bad


async def test_should_refuse_crafted_path_ids_with_a_404_problem(api: ApiClient) -> None:
    _, token = await api.signed_up()
    answers = []
    for route in _documented(lambda r: r.path_parameters):
        for value in PATH_IDS:
            path = _concrete(route.path, value)
            status, media, text = await _answer(api, route.method, path, token, json={})
            answers.append((f"{route.method} {path}", status, media, text))
    assert _problems(answers) == []
    # An id that cannot be a row's answers like one that does not exist (or the body's 422,
    # where the body is read first).
    assert {status for _, status, _, _ in answers} <= {404, 422}


def _id_ordered(route: Route) -> bool:
    return route.path in ("/api/v1/accounts", "/api/v1/bots", "/api/v1/providers")


@pytest.mark.parametrize(
    "route", _documented(lambda r: r.query and "cursor" in r.query.model_fields), ids=_name
)
async def test_should_refuse_crafted_cursors_with_a_422_problem(
    api: ApiClient, route: Route
) -> None:
    _, token = await api.signed_up()
    answers = []
    for cursor in [*_raw_cursors(), *_id_cursors(), *_time_cursors()]:
        query = f"{route.path}?cursor={cursor}"
        status, media, text = await _answer(api, route.method, query, token)
        answers.append((query, status, media, text))
    assert _problems(answers) == []
    assert {status for _, status, _, _ in answers} == {422}
    # The control: a cursor spelled exactly as the API writes them is taken.
    issuable = _cursor([7]) if _id_ordered(route) else _cursor(["2026-01-31T09:30:00+00:00", 7])
    status, _, text = await _answer(api, route.method, f"{route.path}?cursor={issuable}", token)
    assert status == 200, text


@pytest.mark.parametrize("route", _documented(_timestamp_fields), ids=_name)
async def test_should_take_any_rfc3339_instant_or_refuse_it_with_a_422_problem(
    api: ApiClient, route: Route
) -> None:
    _, token = await api.signed_up()
    answers = []
    for name in _timestamp_fields(route):
        for when in ODD_TIMES:
            query = f"{route.path}?{name}={when.replace('+', '%2B')}"
            status, media, text = await _answer(api, route.method, query, token)
            answers.append((query, status, media, text))
    # A representable instant is a valid filter: 200. Anything else: 422 problem.
    assert _problems(answers, allowed=frozenset({200})) == []


def _deep(levels: int) -> list[str]:
    return [
        "[" * levels + "]" * levels,
        '{"a":' * levels + "1" + "}" * levels,
        '{"name": ' + "[" * levels + "]" * levels + "}",
    ]


@pytest.mark.parametrize("route", _documented(lambda r: r.body is not None), ids=_name)
async def test_should_refuse_deeply_nested_json_with_a_4xx_problem(
    api: ApiClient, route: Route
) -> None:
    _, token = await api.signed_up()
    answers = []
    for levels in (900, 10_000, 100_000):
        for body in _deep(levels):
            status, media, text = await _answer(
                api,
                route.method,
                _concrete(route.path),
                token,
                data=body,
                headers={"Content-Type": "application/json"},
            )
            answers.append((f"{levels} levels {body[:12]}…", status, media, text))
    assert _problems(answers) == []
