"""Domain errors the data layer raises instead of driver exceptions, so handlers map them to HTTP."""

from __future__ import annotations

import psycopg2

#: What a query raises when Postgres or pgBouncer cannot answer: a driver error, a broken
#: connection, or the pool's or the query's timeout. For callers that degrade rather than fail.
DATABASE_FAILURES: tuple[type[BaseException], ...] = (psycopg2.Error, OSError, TimeoutError)


class NotFound(Exception):
    """The row does not exist, or belongs to someone else (the caller must not learn which)."""


class Conflict(Exception):
    """A uniqueness rule would be broken (e.g. an email already registered)."""
