"""Passwords (argon2id), access tokens (JWT, HS256 pinned) and server-side sessions.

A token is valid while its signature and ``exp`` hold *and* its session is live. Sessions are
recorded in Postgres (the authority) and cached in Redis with the token's lifetime, so the hot
path never touches Postgres: the API reads the session and the cached user in its rate-limit
check's round trip (:meth:`Sessions.prefetch`), anything else with one ``MGET``; when Redis fails,
the same answer comes from Postgres, counted and logged.

Hashing runs on a small executor of its own whose size follows the container's memory
(:mod:`algoedge.hashing`), behind a bounded queue: a burst of logins waits or is refused
(503), it never takes the process past its memory limit.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.cache import (
    ENDED_SESSION,
    CachedUser,
    PendingDeletes,
    RedisFallback,
    SessionCache,
    UserCache,
    session_key,
    user_key,
)
from algoedge.db import Database, invalidations, users
from algoedge.db.errors import DATABASE_FAILURES, NotFound
from algoedge.hashing import ARGON2_MEMORY_KIB, ARGON2_PARALLELISM, ARGON2_TIME_COST
from algoedge.logins import AccountLimit
from algoedge.metrics import PASSWORD_HASHES, PASSWORD_HASHES_REFUSED

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "algoedge"

T = TypeVar("T")

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)
# Verifying against this when the email is unknown makes both failures cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AuthError(Exception):
    """The request is not authenticated; the message is safe to show the client."""


class HashingBusy(Exception):
    """Every hashing slot and every place in the queue is taken: answered 503 with Retry-After."""

    retry_after_seconds = 1


class Passwords:
    """argon2id hashing and verification, at most ``concurrency`` at once.

    The executor is this object's own (asyncio's default one is sized from the node's CPU
    count, not the container's memory). At most ``queue`` more wait for a thread; beyond them
    :class:`HashingBusy` is raised at once, before anything is allocated. A slot is given back
    when its hash finishes, not when its request goes away, so a client that hangs up cannot
    let more hashes run than there are threads.
    """

    def __init__(self, *, concurrency: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2")
        self._capacity = concurrency + queue
        self._admitted = 0
        self._lock = threading.Lock()

    async def run(self, work: Callable[[], T]) -> T:
        """Run ``work`` on a hashing thread; HashingBusy when no place is left."""
        with self._lock:
            if self._admitted >= self._capacity:
                PASSWORD_HASHES_REFUSED.inc()
                raise HashingBusy
            self._admitted += 1
        try:
            future = self._executor.submit(work)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    async def hash(self, password: str) -> str:
        def compute() -> str:
            PASSWORD_HASHES.labels(operation="hash").inc()
            return _hasher.hash(password)

        return await self.run(compute)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; an unknown account (None) costs the same and is False."""

        def check() -> bool:
            PASSWORD_HASHES.labels(operation="verify").inc()
            try:
                return (
                    _hasher.verify(password_hash or _DUMMY_HASH, password)
                    and password_hash is not None
                )
            except (VerificationError, InvalidHashError):
                return False

        return await self.run(check)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


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
    """Signs and checks access tokens; pure apart from the clock passed in.

    A client presents the same token on every request until it expires, so the claims of the
    last ``remembered`` tokens that checked out are kept (a signature is checked once per token
    and process, not once per request: that was a tenth of an authenticated request's CPU).
    Only a token whose signature and claims were verified is remembered, under its exact text,
    and its expiry is still checked on every use.
    """

    def __init__(
        self,
        secret: str,
        *,
        ttl_seconds: int,
        remembered: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self._remembered = remembered
        self._clock = clock
        # token -> (its claims, its exp as a POSIX timestamp); oldest first.
        self._verified: dict[str, tuple[Claims, float]] = {}

    def issue(self, user_id: int, *, now: datetime) -> AccessToken:
        jti = secrets.token_urlsafe(18)
        expires_at = now + timedelta(seconds=self.ttl_seconds)
        claims = {"sub": str(user_id), "jti": jti, "iat": now, "exp": expires_at, "iss": ISSUER}
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return AccessToken(token=token, jti=jti, user_id=user_id, expires_at=expires_at)

    def decode(self, token: str) -> Claims:
        known = self._verified.get(token)
        if known is not None:
            claims, expires = known
            # jwt.decode's rule, without leeway: expired from the second of exp on.
            if self._clock() < expires:
                return claims
            del self._verified[token]
            raise AuthError("The access token has expired.")
        verified = self._decode(token)
        if len(self._verified) >= self._remembered:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (verified, verified.expires_at.timestamp())
        return verified

    def _decode(self, token: str) -> Claims:
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


def _remaining(expires_at: datetime) -> int:
    """Whole seconds until ``expires_at`` (at least 1): the TTL of a token's Redis entries."""
    return max(1, int((expires_at - datetime.now(UTC)).total_seconds()))


def cached(user: users.User) -> CachedUser:
    return CachedUser(
        id=user.id,
        email=user.email,
        name=user.name,
        email_reports=user.email_reports,
        version=int(user.updated_at.timestamp() * 1_000_000),
    )


@dataclass(frozen=True, slots=True)
class SessionPrefetch:
    """The Redis keys :meth:`Sessions.user_of` reads for a token, for a caller to read in a round
    trip of its own, and the state of pending cache deletions when it was asked for."""

    keys: tuple[str, str]
    generation: int


@dataclass(frozen=True, slots=True)
class PrefetchedSession:
    """What a caller read for a :class:`SessionPrefetch`: the session's and the user's entries."""

    prefetch: SessionPrefetch
    session: str | None
    user: str | None


class EndedSessions:
    """Sessions this process saw end, for ``ttl_seconds``: the same dead token presented again (a
    socket reconnecting, a client retrying) is refused without asking Redis or Postgres.

    Only ever a refusal, and an ended session never comes back (Postgres's answer is the
    primary's), so keeping it per process cannot let a revoked token in anywhere; the other pods
    read the session's tombstone in Redis. Bounded: the oldest entries go first.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    def add(self, jti: str) -> None:
        self._until[jti] = self._clock() + self._ttl
        self._until.move_to_end(jti)
        while len(self._until) > self._max:
            self._until.popitem(last=False)

    def __contains__(self, jti: str) -> bool:
        until = self._until.get(jti)
        if until is not None and until <= self._clock():
            del self._until[jti]
            return False
        return until is not None


class Sessions:
    """Logins, logouts, and the authenticated user behind a token."""

    def __init__(
        self,
        *,
        db: Database,
        redis: Redis,
        tokens: Tokens,
        user_cache_ttl: int,
        passwords: Passwords,
        account_limit: AccountLimit,
    ) -> None:
        self._db = db
        self._redis = redis
        self._tokens = tokens
        self.token_ttl = tokens.ttl_seconds
        self.passwords = passwords
        self._account_limit = account_limit
        self._sessions = SessionCache(redis)
        self._users = UserCache(redis, ttl_seconds=user_cache_ttl)
        self._pending = PendingDeletes(redis)
        self._fallback = RedisFallback()
        self._last_warning = -1e9
        self._ended = EndedSessions()

    async def login(self, email: str, password: str, *, network: str) -> AccessToken:
        """A new session; ``network`` is the client's rate-limit subject (address or /64).

        Raises TooManyFailures before any work when the account's failures are spent and the
        network is not one it logged in from, AuthError for a wrong e-mail or password."""
        await self._account_limit.admit(email, network=network)
        found = await users.get_login(self._db, email)
        user, password_hash = found if found else (None, None)
        if not await self.passwords.verify(password_hash, password) or user is None:
            # Unknown e-mails are charged too: the answer must not say which exist.
            await self._account_limit.failed(email)
            raise AuthError("The email or password is wrong.")
        await self._account_limit.succeeded(email, network=network)
        token = self._tokens.issue(user.id, now=datetime.now(UTC))
        await users.record_session(
            self._db, jti=token.jti, user_id=user.id, expires_at=token.expires_at
        )
        try:
            await self._flush_pending()
            await self._sessions.start(token.jti, user.id, ttl_seconds=_remaining(token.expires_at))
            await self._users.put(cached(user))
        except RedisError as exc:
            # Postgres has the session; Redis learns it on the first authenticated request.
            self._fallback.record("session_write", exc)
        return token

    async def logout(self, claims: Claims) -> None:
        await users.revoke_session(self._db, claims.jti)
        self._ended.add(claims.jti)
        try:
            await self._flush_pending()
            # A tombstone, not a delete: a concurrent refill (SET NX) cannot undo it.
            await self._sessions.end(claims.jti, ttl_seconds=_remaining(claims.expires_at))
        except RedisError as exc:
            self._fallback.record("delete", exc)
            await self._invalidate_later(session_key(claims.jti))

    async def authenticate(self, token: str) -> CachedUser:
        """The user behind a live token; AuthError otherwise."""
        claims = self._tokens.decode(token)
        return await self.user_of(claims)

    def decode(self, token: str) -> Claims:
        return self._tokens.decode(token)

    def prefetch(self, claims: Claims) -> SessionPrefetch | None:
        """The keys a caller may read now for :meth:`user_of` (pass what it read as
        ``prefetched``); None when it must not: a cache deletion is pending (Redis must lose a
        key before it is read), or this process already knows the session ended."""
        if self._pending or claims.jti in self._ended:
            return None
        return SessionPrefetch(
            keys=(session_key(claims.jti), user_key(claims.user_id)),
            generation=self._pending.generation,
        )

    async def user_of(
        self, claims: Claims, *, prefetched: PrefetchedSession | None = None
    ) -> CachedUser:
        """The user behind ``claims``; AuthError when the session is not live.

        ``prefetched`` saves the Redis read when it is still as good as one made now: nothing
        was queued for deletion since (else the read happens again, after the deletions)."""
        if claims.jti in self._ended:
            raise AuthError("The session has ended; log in again.")
        if (
            prefetched is not None
            and not self._pending
            and prefetched.prefetch.generation == self._pending.generation
            and prefetched.prefetch.keys == (session_key(claims.jti), user_key(claims.user_id))
        ):
            session, raw_user = prefetched.session, prefetched.user
        else:
            try:
                await self._flush_pending()
                session, raw_user = await self._redis.mget(
                    session_key(claims.jti), user_key(claims.user_id)
                )
            except RedisError as exc:
                self._fallback.record("authenticate", exc)
                return await self._from_postgres(claims, refill=False)
        return await self._resolve(claims, session, raw_user)

    async def ended_among(self, sessions: Sequence[Claims]) -> list[str]:
        """The jtis of ``sessions`` that are no longer live (those :meth:`user_of` would refuse),
        from one Redis ``MGET`` for them all; Postgres only where Redis cannot tell (as
        :meth:`user_of`). Raises what :meth:`user_of` raises when neither can answer."""
        keys = [key for c in sessions for key in (session_key(c.jti), user_key(c.user_id))]
        values: list[str | None] | None = None
        try:
            await self._flush_pending()
            values = await self._redis.mget(keys) if keys else []
        except RedisError as exc:
            self._fallback.record("authenticate", exc)
        ended = []
        for i, claims in enumerate(sessions):
            if claims.jti in self._ended:
                ended.append(claims.jti)
                continue
            try:
                if values is None:
                    await self._from_postgres(claims, refill=False)
                else:
                    await self._resolve(claims, values[2 * i], values[2 * i + 1])
            except AuthError:
                ended.append(claims.jti)
        return ended

    async def _resolve(
        self, claims: Claims, session: str | None, raw_user: str | None
    ) -> CachedUser:
        """The user of a live session from what Redis holds for it; AuthError otherwise."""
        if session is None:
            # Redis never saw this session (written while Redis was down, or Redis lost its
            # data): Postgres decides, and a live session is put back in Redis.
            return await self._from_postgres(claims, refill=True)
        if session == ENDED_SESSION:
            self._ended.add(claims.jti)
            raise AuthError("The session has ended; log in again.")
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
            await self._remember_ended(claims, in_redis=refill)
            raise AuthError("The session has ended; log in again.")
        user = await self._load_user(claims.user_id)
        if refill:
            try:
                # Only where Redis holds nothing: had a logout ended the session since Postgres
                # answered above, its tombstone stays and the token stays refused.
                await self._sessions.refill(
                    claims.jti, claims.user_id, ttl_seconds=_remaining(claims.expires_at)
                )
                await self._users.put(user)
            except RedisError as exc:
                self._fallback.record("session_write", exc)
        return user

    async def _remember_ended(self, claims: Claims, *, in_redis: bool) -> None:
        """A session Postgres says has ended (revoked, pruned, or lost by Redis), remembered so
        its token costs no Postgres query again: in this process for a while and, when Redis
        answers, as the same tombstone a logout writes, for every pod."""
        self._ended.add(claims.jti)
        if not in_redis:
            return
        try:
            await self._sessions.end(claims.jti, ttl_seconds=_remaining(claims.expires_at))
        except RedisError as exc:
            self._fallback.record("session_write", exc)

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
