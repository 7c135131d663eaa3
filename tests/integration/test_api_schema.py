"""Schemathesis against the running API: generated requests for every documented operation must
never produce a 5xx, and every response must match the OpenAPI document.

Left to the document alone, the generator draws path ids from their integer range and cursors as
random text (which never decodes), so it missed crafted ids and cursors and time zones at the
edges; the hooks below mix those in (test_api_fuzz.py walks the known edge cases one by one)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import schemathesis
from algoedge.api.app import API_ROUTES
from algoedge.api.openapi import build_document
from algoedge.config import ApiSettings, load_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from devtools.app import api_environment, migrated
from devtools.services import PgBouncer, PostgresServer, RedisServer
from tests.integration.conftest import RELAXED_LIMITS, api_process

schema = schemathesis.openapi.from_dict(build_document(API_ROUTES))

# Schemathesis builds its coverage-phase cases, auth included, at collection time, before the
# module's API and user exist. The provider therefore stamps a placeholder, and the test swaps in
# the real token. It is applied to every case except those whose negative mutation removed or broke
# the security parameter, so "no Authorization header" cases still expect a 401; passing the header
# through `call_and_validate(headers=...)` would put it back on those and fail them.
_PLACEHOLDER = "Bearer <token of the module's user>"


@schema.auth(refresh_interval=None)
class _BearerToken:
    def get(self, case: schemathesis.Case[Any], context: schemathesis.AuthContext) -> str | None:
        if case.operation.definition.raw.get("security") != [{"bearerAuth": []}]:
            return None  # public routes, and the capacity route with its own internal token
        return _PLACEHOLDER

    def set(
        self, case: schemathesis.Case[Any], data: str, context: schemathesis.AuthContext
    ) -> None:
        case.headers["Authorization"] = data


def _edgy(valid: st.SearchStrategy[int], beyond: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    # Mostly valid, so that the other fields' edges are reached too.
    return st.one_of(*[valid] * 7, beyond)


def _rfc3339ish() -> st.SearchStrategy[str]:
    """Date-times shaped like RFC 3339 with every field pushed to its edges and past them: year
    0 and 9999, month 13, hour 24, second 60, nine fractional digits, offsets like -23:59."""
    # Postgres takes offsets up to ±15:59, Python up to ±23:59:59.
    offset = st.one_of(
        st.sampled_from(["-23:59", "+23:59", "+16:00", "-15:59", "+14:00", "-00:00", "+00:00:30"]),
        st.sampled_from(["Z", "z", "+00:00"]),
        st.builds(
            lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
            st.sampled_from("+-"),
            _edgy(st.integers(0, 23), st.integers(24, 99)),
            _edgy(st.integers(0, 59), st.integers(60, 99)),
        ),
    )
    fraction = st.one_of(
        st.just(""),
        st.text("0123456789", min_size=1, max_size=6).map(lambda d: "." + d),
        st.text("0123456789", min_size=7, max_size=9).map(lambda d: "." + d),
    )
    return st.builds(
        lambda y, mo, d, h, mi, sec, f, o: (
            f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}{f}{o}"
        ),
        st.one_of(st.integers(1, 9999), st.sampled_from([0, 1, 9999])),
        _edgy(st.integers(1, 12), st.sampled_from([0, 13])),
        _edgy(st.integers(1, 28), st.sampled_from([0, 29, 30, 31, 32])),
        _edgy(st.integers(0, 23), st.just(24)),
        _edgy(st.integers(0, 59), st.just(60)),
        _edgy(st.integers(0, 59), st.sampled_from([60, 61])),
        fraction,
        offset,
    )


def _instants() -> st.SearchStrategy[str]:
    """Real instants in Python's whole range, at any offset Python allows (to the microsecond):
    Postgres reads fewer of them (offsets to ±15:59 only, no year 0 after conversion)."""
    offsets = st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59, seconds=59),
        max_value=timedelta(hours=23, minutes=59, seconds=59),
    )
    return st.datetimes(
        min_value=datetime.min, max_value=datetime.max, timezones=offsets.map(timezone)
    ).map(datetime.isoformat)


def _cursors() -> st.SearchStrategy[str]:
    """Cursors that decode: url-safe base64 of a JSON list shaped like the API's (an id, or a
    time and an id), with crafted parts, and of any short list."""
    row_id = st.one_of(st.sampled_from([0, -1, 2**63 - 1, 2**63, 10**40]), st.integers())
    part = st.one_of(
        _rfc3339ish(),
        row_id,
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
        st.text(max_size=8),
    )
    time_key = st.tuples(st.one_of(_instants(), _rfc3339ish()), row_id).map(list)
    key = st.one_of(time_key, time_key, st.tuples(row_id).map(list), st.lists(part, max_size=3))
    return key.map(lambda k: base64.urlsafe_b64encode(json.dumps(k).encode()).decode().rstrip("="))


def _date_time(parameter: Any) -> bool:
    schema = parameter.definition.get("schema", {})
    return any(s.get("format") == "date-time" for s in [schema, *schema.get("anyOf", [])])


@schema.hook
def flatmap_query(
    context: schemathesis.HookContext, query: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    if context.operation is None or not isinstance(query, dict):
        return st.just(query)
    crafted = {
        p.name: st.one_of(_instants(), _rfc3339ish())
        for p in context.operation.query
        if _date_time(p)
    }
    if any(p.name == "cursor" for p in context.operation.query):
        crafted["cursor"] = _cursors()
    if not crafted:
        return st.just(query)
    # One crafted value at a time: another invalid field would be refused first and hide it.
    one = st.sampled_from(sorted(crafted)).flatmap(
        lambda name: crafted[name].map(lambda value: {**query, name: value})
    )
    return st.one_of(st.just(query), one, one)


# Path ids the document's integer range leaves out. Never "/" or a dot segment: the path would
# then name another route, whose answers the check would hold against this operation's.
_PATH_TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/?#"), max_size=24
).filter(lambda text: text.strip(".") != "")


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    if not path_parameters:
        return st.just(path_parameters)
    value = st.one_of(
        st.integers(),
        st.sampled_from([0, -1, 2**63 - 1, 2**63, 10**40]).map(str),
        _PATH_TEXT,
    )
    crafted = st.fixed_dictionaries(dict.fromkeys(path_parameters, value))
    return st.one_of(st.just(path_parameters), crafted)


@dataclass(frozen=True)
class ApiUnderTest:
    base: str
    #: The same process's metrics listener.
    metrics: str
    authorization: str
    #: A token of its own session for each logout case, so the others' stays live.
    fresh_authorization: Callable[[], str]


@pytest.fixture(scope="module")
def api_under_test(
    pgbouncer: PgBouncer, redis_server: RedisServer, postgres: PostgresServer
) -> Iterator[ApiUnderTest]:
    database = postgres.create_database(f"t_{secrets.token_hex(6)}")
    env = {**api_environment(pgbouncer.url_for(database), redis_server.url), **RELAXED_LIMITS}
    asyncio.run(migrated(load_settings(ApiSettings, env)))
    with api_process(env) as base:
        email = f"{secrets.token_hex(4)}@example.com"
        credentials = {"email": email, "password": "correct horse battery"}
        requests.post(f"{base}/api/v1/auth/register", json={**credentials, "name": "S"}, timeout=30)

        def login() -> str:
            answer = requests.post(f"{base}/api/v1/auth/login", json=credentials, timeout=30)
            return f"Bearer {answer.json()['access_token']}"

        yield ApiUnderTest(
            base=base, metrics=base.metrics, authorization=login(), fresh_authorization=login
        )


#: Paths served only by the metrics listener (routes.Route.listener).
ON_METRICS_LISTENER = {route.path: route.listener == "metrics" for route in API_ROUTES}


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_should_honour_the_openapi_document(
    case: schemathesis.Case[Any], api_under_test: ApiUnderTest
) -> None:
    api = api_under_test
    if case.headers.get("Authorization") == _PLACEHOLDER:
        logout = case.operation.path == "/api/v1/auth/logout"
        case.headers["Authorization"] = api.fresh_authorization() if logout else api.authorization
    # Every check but "schema-valid data is accepted": an opaque pagination cursor or the id of a
    # row that does not exist fits the schema and is still rightly refused (422, 404).
    # Each operation is called on the listener the route table puts it on (/metrics and
    # /internal/v1/* exist only on the metrics port).
    base = api.metrics if ON_METRICS_LISTENER.get(case.operation.path) else api.base
    case.call_and_validate(base_url=base, excluded_checks=[positive_data_acceptance])
