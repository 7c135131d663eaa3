"""The "current state" baseline of the API benchmark: the real app with no pooling and no user cache.

The scalability analysis measured a service that opened a new database connection for every
query and read the signed-in user from Postgres on every request. This module rebuilds exactly
that from the real app (``algoedge.api.app.create_app``) without touching its code paths:

- :class:`PerOperationDatabase` opens a fresh ``aiopg.connect`` for every ``cursor()`` /
  ``transaction()`` and closes it afterwards. Point ``ALGOEDGE_DATABASE_URL`` at PostgreSQL
  itself, not pgBouncer, as the analysis's current state did.
- :class:`PostgresUserSessions` answers every authenticated request (and socket connect) by
  loading the user from Postgres after checking the token's signature and expiry; like the
  analysis's current state, it does not consult server-side sessions.

Everything else (routes, rate limiter, listing cache, socket.io over Redis) is the real app's.
Run with the same ``ALGOEDGE_*`` variables as ``algoedge api``: ``python -m bench.baseline_app``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiopg
from aiohttp import web
from algoedge import logs
from algoedge.api.app import create_app
from algoedge.api.state import DATABASE, LIMITER, PASSWORDS, REDIS, SESSIONS
from algoedge.auth import AuthError, Claims, PrefetchedSession, Sessions, Tokens, cached
from algoedge.cache import CachedUser
from algoedge.config import ApiSettings, ConfigError, load_settings
from algoedge.db import Database, PoolStats, users
from algoedge.db.errors import NotFound
from algoedge.logins import AccountLimit

from bench.hello import raise_file_limit


class PerOperationDatabase(Database):
    """A Database without a pool: every cursor is a new connection, closed when the cursor is."""

    def __init__(self, dsn: str, *, timeout: float) -> None:  # no pool, so no super().__init__
        self._dsn = dsn
        self._timeout = timeout
        self._open = 0

    def _connect(self) -> Any:
        # hstore off as in the real pool, so the baseline is not charged an extra query.
        return aiopg.connect(self._dsn, timeout=self._timeout, enable_hstore=False)

    async def close(self) -> None:
        """Nothing is held between operations."""

    def stats(self) -> PoolStats:
        return PoolStats(size=self._open, free=0, minsize=0, maxsize=0)

    @asynccontextmanager
    async def cursor(self) -> AsyncIterator[Any]:
        async with self._connect() as conn, conn.cursor() as cur:
            self._open += 1
            try:
                yield cur
            finally:
                self._open -= 1

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self._connect() as conn, conn.cursor() as cur, cur.begin():
            self._open += 1
            try:
                yield cur
            finally:
                self._open -= 1


class PostgresUserSessions(Sessions):
    """Sessions whose request path reads the user from Postgres every time (no Redis cache)."""

    def __init__(self, *, db: Database, **kwargs: Any) -> None:
        super().__init__(db=db, **kwargs)
        self._users_db = db

    def prefetch(self, claims: Claims) -> None:
        return None  # the current state read nothing in the rate limiter's round trip

    async def user_of(
        self, claims: Claims, *, prefetched: PrefetchedSession | None = None
    ) -> CachedUser:
        try:
            return cached(await users.get_user(self._users_db, claims.user_id))
        except NotFound:
            raise AuthError("The account no longer exists.") from None


def create_baseline_app(settings: ApiSettings) -> web.Application:
    """The real app, with the database and the session lookup swapped once it has started."""
    app = create_app(settings)

    async def current_state(app: web.Application) -> AsyncIterator[None]:
        # Runs after the real cleanup contexts opened their pool and Sessions: replace both.
        pooled = app[DATABASE]
        database = PerOperationDatabase(settings.database_url, timeout=settings.db_timeout)
        app[DATABASE] = database
        # The pool stays open until cleanup: the real Sessions' invalidation drain, started
        # before this context, keeps using it once a second (closed here, it logged an ERROR
        # every second). Requests no longer touch it.
        app[SESSIONS] = PostgresUserSessions(
            db=database,
            redis=app[REDIS],
            tokens=Tokens(
                settings.jwt_secret.get_secret_value(), ttl_seconds=settings.access_token_ttl
            ),
            user_cache_ttl=settings.user_cache_ttl,
            passwords=app[PASSWORDS],
            account_limit=AccountLimit(
                limiter=app[LIMITER], redis=app[REDIS], limit=settings.rate_limit_account
            ),
        )
        yield
        await pooled.close()

    app.cleanup_ctx.append(current_state)
    return app


def main() -> int:
    try:
        # Pool minimum 0: the real pool opened at start-up serves only the invalidation drain.
        settings = load_settings(ApiSettings, {**os.environ, "ALGOEDGE_DB_POOL_MIN": "0"})
    except ConfigError as exc:
        print(f"bench.baseline_app: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    raise_file_limit()
    web.run_app(
        create_baseline_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout=20.0,
        access_log=None,
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
