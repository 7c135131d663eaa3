"""Passwords (argon2id), access tokens (JWT, HS256 pinned) and server-side sessions.

A token is valid while its signature and ``exp`` hold *and* its session is live. Sessions are
recorded in Postgres (the authority) and cached in Redis with the token's lifetime, so the hot
path is one Redis round trip (``MGET`` of the session and the cached user) and never touches
Postgres; when Redis fails, the same answer comes from Postgres, counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.cache import (
    CachedUser,
    PendingDeletes,
    RedisFallback,
    UserCache,
    session_key,
    user_key,
)
from algoedge.db import Database, invalidations, users
from algoedge.db.errors import DATABASE_FAILURES, NotFound

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "algoedge"

# argon2-cffi's defaults are RFC 9106's "low memory" profile: argon2id, t=3, m=64 MiB, p=4.
_hasher = PasswordHasher()
# Verifying against this when the email is unknown makes both failures cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AuthError(Exception):
    """The request is not authenticated; the message is safe to show the client."""


async def hash_password(password: str) -> str:
    # argon2 takes tens of milliseconds of CPU; a thread keeps the event loop serving.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return (
                _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    jti: str
    user_id: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    jti: str
    expires_at: datetime


class Tokens:
    """Signs and checks access tokens; pure apart from the clock passed in."""

    def __init__(self, secret: str, *, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def issue(self, user_id: int, *, now: datetime) -> AccessToken:
        jti = secrets.token_urlsafe(18)
        expires_at = now + timedelta(seconds=self.ttl_seconds)
        claims = {"sub": str(user_id), "jti": jti, "iat": now, "exp": expires_at, "iss": ISSUER}
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return AccessToken(token=token, jti=jti, user_id=user_id, expires_at=expires_at)

    def decode(self, token: str) -> Claims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # pinned: "none" and RS/HS confusion are refused
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "iss"]},
            )
            user_id = int(claims["sub"])
        except jwt.ExpiredSignatureError:
            raise AuthError("The access token has expired.") from None
        except (jwt.InvalidTokenError, ValueError):
            raise AuthError("The access token is not valid.") from None
        return Claims(
            user_id=user_id,
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
        )


def cached(user: users.User) -> CachedUser:
    return CachedUser(
        id=user.id,
        email=user.email,
        name=user.name,
        email_reports=user.email_reports,
        version=int(user.updated_at.timestamp() * 1_000_000),
    )


class Sessions:
    """Logins, logouts, and the authenticated user behind a token."""

    def __init__(self, *, db: Database, redis: Redis, tokens: Tokens, user_cache_ttl: int) -> None:
        self._db = db
        self._redis = redis
        self._tokens = tokens
        self.token_ttl = tokens.ttl_seconds
        self._users = UserCache(redis, ttl_seconds=user_cache_ttl)
        self._pending = PendingDeletes(redis)
        self._fallback = RedisFallback()
        self._last_warning = -1e9

    async def login(self, email: str, password: str) -> AccessToken:
        found = await users.get_login(self._db, email)
        user, password_hash = found if found else (None, None)
        if not await verify_password(password_hash, password) or user is None:
            raise AuthError("The email or password is wrong.")
        token = self._tokens.issue(user.id, now=datetime.now(UTC))
        await users.record_session(
            self._db, jti=token.jti, user_id=user.id, expires_at=token.expires_at
        )
        try:
            await self._flush_pending()
            ttl = max(1, int((token.expires_at - datetime.now(UTC)).total_seconds()))
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(session_key(token.jti), str(user.id), ex=ttl)
                await pipe.execute()
            await self._users.put(cached(user))
        except RedisError as exc:
            # Postgres has the session; Redis learns it on the first authenticated request.
            self._fallback.record("session_write", exc)
        return token

    async def logout(self, claims: Claims) -> None:
        await users.revoke_session(self._db, claims.jti)
        await self._forget(session_key(claims.jti))

    async def authenticate(self, token: str) -> CachedUser:
        """The user behind a live token; AuthError otherwise."""
        claims = self._tokens.decode(token)
        return await self.user_of(claims)

    def decode(self, token: str) -> Claims:
        return self._tokens.decode(token)

    async def user_of(self, claims: Claims) -> CachedUser:
        try:
            await self._flush_pending()
            session, raw_user = await self._redis.mget(
                session_key(claims.jti), user_key(claims.user_id)
            )
        except RedisError as exc:
            self._fallback.record("authenticate", exc)
            return await self._from_postgres(claims, refill=False)
        if session is None:
            # Redis never saw this session (written while Redis was down, or Redis lost its
            # data): Postgres decides, and a live session is put back in Redis.
            return await self._from_postgres(claims, refill=True)
        if int(session) != claims.user_id:
            raise AuthError("The access token is not valid.")
        if raw_user is not None and (hit := CachedUser.loads(raw_user)) is not None:
            return hit
        user = await self._load_user(claims.user_id)
        await self._cache_user(user)
        return user

    async def update_profile(
        self, user_id: int, *, name: str | None = None, email_reports: bool | None = None
    ) -> CachedUser:
        """Change the given fields in Postgres, then write the user through to the cache.

        The cached entry is replaced only by a newer version; when Redis cannot be written, the
        entry is invalidated (now or, failing that, by any pod later) so no pod keeps the old one.
        """
        updated = cached(
            await users.update_profile(self._db, user_id, name=name, email_reports=email_reports)
        )
        try:
            await self._flush_pending()
            await self._users.put(updated)
        except RedisError as exc:
            self._fallback.record("user_cache_write", exc)
            await self._invalidate_later(user_key(user_id))
        return updated

    async def _from_postgres(self, claims: Claims, *, refill: bool) -> CachedUser:
        owner = await users.session_active(self._db, claims.jti)
        if owner is None or owner != claims.user_id:
            raise AuthError("The session has ended; log in again.")
        user = await self._load_user(claims.user_id)
        if refill:
            ttl = max(1, int((claims.expires_at - datetime.now(UTC)).total_seconds()))
            try:
                await self._redis.set(session_key(claims.jti), str(claims.user_id), ex=ttl)
                await self._users.put(user)
            except RedisError as exc:
                self._fallback.record("session_write", exc)
        return user

    async def _load_user(self, user_id: int) -> CachedUser:
        try:
            return cached(await users.get_user(self._db, user_id))
        except NotFound:
            raise AuthError("The account no longer exists.") from None

    async def _cache_user(self, user: CachedUser) -> None:
        try:
            await self._users.put(user)
        except RedisError as exc:
            self._fallback.record("user_cache_write", exc)

    async def _forget(self, key: str) -> None:
        try:
            await self._flush_pending()
            await self._redis.delete(key)
        except RedisError as exc:
            self._fallback.record("delete", exc)
            await self._invalidate_later(key)

    async def _invalidate_later(self, key: str) -> None:
        """A key Redis must lose once it answers: kept in memory (this pod deletes it before its
        next Redis read) and in Postgres (any pod deletes it, even after this one dies)."""
        self._pending.add(key)
        try:
            await invalidations.record(self._db, [key])
        except DATABASE_FAILURES as exc:  # Postgres failing too: this pod's memory has the key
            self._warn_throttled("recording a cache invalidation failed", exc)

    async def _flush_pending(self) -> None:
        await self._pending.flush()

    async def retry_pending_forever(self, interval: float = 1.0) -> None:
        """Until cancelled, delete what Redis must lose: this pod's pending keys, then what any
        pod recorded in Postgres.

        Without this, other pods would accept a revoked session's cached key until its TTL.
        """
        while True:
            await asyncio.sleep(interval)
            try:
                await self._flush_pending()
                await self.drain_invalidations()
            except RedisError as exc:
                self._fallback.record("delete", exc)
            except DATABASE_FAILURES as exc:  # Postgres unreachable: the next round tries again
                self._warn_throttled("draining cache invalidations failed", exc)
            except Exception:  # a bug must not end revocation for the life of the pod
                log.exception("draining cache invalidations failed unexpectedly")

    def _warn_throttled(self, message: str, error: BaseException) -> None:
        """A warning at most every 30 s: the drain loop meets a Postgres outage every second."""
        now = time.monotonic()
        if now - self._last_warning >= 30.0:
            self._last_warning = now
            log.warning("%s: %r", message, error)

    async def drain_invalidations(self) -> int:
        """Delete in Redis the keys recorded in Postgres, then forget them; how many were done."""
        count = 0
        while entries := await invalidations.pending(self._db):
            await self._redis.delete(*{entry.key for entry in entries})
            await invalidations.done(self._db, entries)
            count += len(entries)
            if len(entries) < invalidations.PAGE:
                break
        if count:
            log.info("deleted %d cache keys recorded while redis was unreachable", count)
        return count
