"""Domain errors the data layer raises instead of driver exceptions, so handlers map them to HTTP."""

from __future__ import annotations

import psycopg2

#: What a query raises when Postgres or pgBouncer cannot answer: a driver error, a broken
#: connection, or the pool's or the query's timeout. For callers that degrade rather than fail.
DATABASE_FAILURES: tuple[type[BaseException], ...] = (psycopg2.Error, OSError, TimeoutError)


#: The failures that say Postgres or pgBouncer cannot answer *now* (down, paused, refusing
#: connections, a connection lost, the pool or a statement timing out, a serialization failure)
#: rather than that a query is wrong: the API answers them 503 with Retry-After, never 500.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    TimeoutError,
)


class NotFound(Exception):
    """The row does not exist, or belongs to someone else (the caller must not learn which)."""


class Conflict(Exception):
    """A uniqueness rule would be broken (e.g. an email already registered)."""


class LimitReached(Conflict):
    """Creating one more would exceed a per-user limit; removing one first makes room."""
