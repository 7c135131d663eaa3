"""Redis access for the app (sessions, user cache, fan-out), always through redis.asyncio.

aioredis is deliberately absent: 2.0.1 cannot be imported on Python 3.11, and redis-py's
``redis.asyncio`` is its official successor. Every key the app writes is named here (and listed
in docs/architecture.md), so no other module spells a key by hand.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from algoedge.config import ServiceSettings
from algoedge.keys import PREFIX
from algoedge.metrics import REDIS_ERRORS

log = logging.getLogger(__name__)


def session_key(jti: str) -> str:
    return f"{PREFIX}:session:{jti}"


def user_key(user_id: int) -> str:
    return f"{PREFIX}:user:{user_id}"


def listing_key(name: str) -> str:
    return f"{PREFIX}:listing:{name}"


def login_networks_key(account: str) -> str:
    """Networks ``account`` (a digest of its e-mail) logged in from: exempt from its failure limit."""
    return f"{PREFIX}:login:networks:{account}"


#: Seconds one Redis command (or connecting) may take before the caller falls back.
REDIS_TIMEOUT_SECONDS = 1.0


def client_options(*, subscriber: bool = False) -> dict[str, Any]:
    """``Redis.from_url`` options of every Redis client of the app processes.

    Short timeouts, so a Redis that accepts connections but never answers fails a command in a
    second instead of hanging it. One immediate retry on a broken connection (a pooled
    connection a restarted Redis closed), none on a timeout: redis-py's default of three
    retries with backoff would turn one unanswered command into ten seconds. A ``subscriber``
    waits for messages indefinitely, so it has no read timeout (it would cut every quiet
    second); it still connects within the timeout and keeps its socket alive.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if not subscriber:
        options |= {"socket_timeout": REDIS_TIMEOUT_SECONDS, "health_check_interval": 30}
    return options


def connect_redis(settings: ServiceSettings) -> Redis:
    """A lazily connecting client with short timeouts, so a dead Redis fails fast instead of hanging."""
    client: Redis = Redis.from_url(
        settings.redis_url, decode_responses=True, max_connections=200, **client_options()
    )
    return client


async def ping(redis: Redis) -> None:
    """Raise when Redis does not answer."""
    await redis.ping()


class RedisFallback:
    """Counts and logs (at most every 30 s per operation) each time Redis fails and we fall back."""

    def __init__(self) -> None:
        self._last_logged: dict[str, float] = {}

    def record(self, operation: str, error: BaseException) -> None:
        REDIS_ERRORS.labels(operation=operation).inc()
        now = time.monotonic()
        if now - self._last_logged.get(operation, -1e9) >= 30.0:
            self._last_logged[operation] = now
            log.warning("redis unavailable for %s, falling back: %r", operation, error)


@dataclass(frozen=True, slots=True)
class CachedUser:
    id: int
    email: str
    name: str
    email_reports: bool
    # Microseconds since the epoch of users.updated_at: orders versions of the same user.
    version: int

    def dumps(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "email": self.email,
                "name": self.name,
                "email_reports": self.email_reports,
                "v": self.version,
            }
        )

    @classmethod
    def loads(cls, raw: str) -> CachedUser | None:
        """The cached user, or None for an entry written before a field existed (a cache miss)."""
        data = json.loads(raw)
        if "email_reports" not in data:
            return None
        return cls(
            id=int(data["id"]),
            email=str(data["email"]),
            name=str(data["name"]),
            email_reports=bool(data["email_reports"]),
            version=int(data["v"]),
        )


# Store a user only when the cache holds nothing or an older version: a reader that loaded the
# row before a concurrent update cannot overwrite the updated entry with stale data.
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and tonumber(decoded['v']) and tonumber(decoded['v']) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class UserCache:
    """User records in Redis for ``ttl_seconds``; Postgres stays the authority."""

    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._put = redis.register_script(_PUT_IF_NEWER)

    async def put(self, user: CachedUser) -> None:
        await self._put(keys=[user_key(user.id)], args=[user.dumps(), user.version, self._ttl])


#: What a session's key holds once the session has ended (logout). No user has id 0, so a pod of
#: the previous release, which reads the value as the session's user id, refuses the token too.
ENDED_SESSION = "0"


class SessionCache:
    """Live sessions in Redis (value: the user id), and the sessions that ended (a tombstone).

    Postgres is the authority; Redis is refilled from it when it lost a session. A refill is only
    ever written where Redis holds nothing (``SET NX``), and a logout writes a tombstone rather
    than deleting the key, so a reader that found the session live in Postgres just before a
    concurrent logout cannot bring it back by refilling after the logout.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def start(self, jti: str, user_id: int, *, ttl_seconds: int) -> None:
        """A new session (login): nothing can be stored under a fresh ``jti`` yet."""
        await self._redis.set(session_key(jti), str(user_id), ex=max(1, ttl_seconds))

    async def refill(self, jti: str, user_id: int, *, ttl_seconds: int) -> bool:
        """Put back a session read live from Postgres, unless the key holds anything (an ended
        session's tombstone above all); whether it was written."""
        written = await self._redis.set(
            session_key(jti), str(user_id), ex=max(1, ttl_seconds), nx=True
        )
        return bool(written)

    async def end(self, jti: str, *, ttl_seconds: int) -> None:
        """Mark the session ended for the rest of its token's lifetime."""
        await self._redis.set(session_key(jti), ENDED_SESSION, ex=max(1, ttl_seconds))


class PendingDeletes:
    """Keys whose deletion failed while Redis was down; retried before this pod's next Redis use.

    This is the pod's own fast path. The same keys are also recorded in Postgres
    (``algoedge.db.invalidations``), which every pod drains, so they survive this pod.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._keys: set[str] = set()
        #: Counts calls of :meth:`add`: a read made while nothing was pending is as fresh as one
        #: made after a flush only if no key was added since (same generation, still empty).
        self.generation = 0

    def add(self, *keys: str) -> None:
        self._keys.update(keys)
        self.generation += 1

    def __len__(self) -> int:
        return len(self._keys)

    async def flush(self) -> None:
        """Delete what is pending; raises (and keeps the keys) while Redis is still down."""
        if not self._keys:
            return
        keys = sorted(self._keys)
        await self._redis.delete(*keys)
        self._keys.difference_update(keys)


__all__ = [
    "ENDED_SESSION",
    "CachedUser",
    "PendingDeletes",
    "RedisFallback",
    "SessionCache",
    "UserCache",
    "client_options",
    "connect_redis",
    "listing_key",
    "login_networks_key",
    "ping",
    "session_key",
    "user_key",
]
