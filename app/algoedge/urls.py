"""The Postgres and Redis URL rules, shared by the app's settings and the operator.

Standard library only: the operator imports this module, and its image installs none of the
app's extras (aiohttp, redis, cryptography). Each check raises ValueError with a reason that
follows a name ("ALGOEDGE_DATABASE_URL has no host", "the database URL has no host") and never
echoes the value, which may hold a password.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss")
POSTGRES_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
REDIS_FORM = "redis://[:PASSWORD@]HOST:PORT/DB (or rediss://)"
#: libpq's ``sslmode`` values (pgBouncer's ``server_tls_sslmode`` takes the same).
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def split_url(value: str, *, schemes: Iterable[str]) -> SplitResult:
    """The URL's parts once its scheme, port and host are acceptable."""
    parts = urlsplit(value)
    allowed = tuple(schemes)
    if parts.scheme not in allowed:
        raise ValueError(f"must start with {' or '.join(s + '://' for s in allowed)}")
    try:
        # Accessing .port validates it (non-numeric or out of range raises ValueError).
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("has no host")
    return parts


@dataclass(frozen=True)
class PostgresTarget:
    """What a Postgres URL names, unquoted."""

    host: str
    port: int
    dbname: str
    user: str | None
    password: str | None
    #: libpq ``sslmode`` (``prefer`` when the URL does not say).
    sslmode: str


def parse_postgres_url(value: str) -> PostgresTarget:
    """``postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DBNAME[?sslmode=…]``."""
    parts = split_url(value, schemes=POSTGRES_SCHEMES)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname.strip("/"):
        raise ValueError("names no database")
    sslmode = parse_qs(parts.query).get("sslmode", ["prefer"])[-1]
    if sslmode not in SSLMODES:
        raise ValueError("has an unknown sslmode")
    return PostgresTarget(
        host=str(parts.hostname),
        port=parts.port or 5432,
        dbname=dbname,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        sslmode=sslmode,
    )


def check_redis_url(value: str) -> str:
    """``redis://[:PASSWORD@]HOST[:PORT][/DB]`` or ``rediss://…``; the value unchanged."""
    parts = split_url(value, schemes=REDIS_SCHEMES)
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError("has a database that is not a number")
    return value
