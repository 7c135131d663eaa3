"""The per-account login limit: failed logins counted per e-mail, whichever address they come from.

The per-address limit (``ALGOEDGE_RATE_LIMIT_AUTH``) leaves password guessing spread over many
addresses unlimited; this one bounds the failures against one account
(``ALGOEDGE_RATE_LIMIT_ACCOUNT``, GCRA like every other limit, key ``login:<account>``). Only
failures are charged, so an owner who types the password right is never slowed down by their
own logins.

A limit keyed by account alone lets anyone lock the owner out, for as long as they keep
failing. So, once the account's budget is spent, a login from a network the account logged in
from successfully before (an IPv4 address or an IPv6 /64, remembered for
:data:`NETWORK_MEMORY_SECONDS`, the newest :data:`NETWORKS_REMEMBERED` of them) is still
tried; only unknown networks are refused (429). docs/security.md weighs this.

The account is a digest of the e-mail as the login looks it up (lower case), so no address
appears in Redis keys.
"""

from __future__ import annotations

import hashlib
import time
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.cache import RedisFallback, login_networks_key
from algoedge.ratelimit import RateLimiter
from algoedge.rates import RateLimit

#: How long a network an account logged in from stays exempt from its failure limit.
NETWORK_MEMORY_SECONDS: Final = 30 * 86_400
#: At most this many networks per account are remembered (the newest).
NETWORKS_REMEMBERED: Final = 20


class TooManyFailures(Exception):
    """The account's failed-login budget is spent and this network is not one it knows."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("Too many failed logins for this account; retry after Retry-After.")
        self.retry_after_seconds = retry_after_seconds


def account_subject(email: str) -> str:
    """The account's name in rate-limit and Redis keys: a digest of its lower-cased e-mail."""
    return hashlib.sha256(email.lower().encode()).hexdigest()[:32]


class AccountLimit:
    """Refuses logins to an account whose failures are spent, except from networks it knows."""

    def __init__(self, *, limiter: RateLimiter, redis: Redis, limit: RateLimit) -> None:
        self._limiter = limiter
        self._redis = redis
        self._limit = limit
        self._fallback = RedisFallback()

    def _bucket(self, email: str) -> list[tuple[str, RateLimit]]:
        return [(f"login:{account_subject(email)}", self._limit)]

    async def admit(self, email: str, *, network: str) -> None:
        """Raise TooManyFailures when the budget is spent and ``network`` is not known.

        Only looks (charges nothing): a login is charged when it fails, by :meth:`failed`.
        """
        decision = await self._limiter.check(self._bucket(email), charge=False)
        if decision.allowed or await self._known(email, network):
            return
        self._limiter.count_denied(decision)
        raise TooManyFailures(decision.retry_after_seconds)

    async def failed(self, email: str) -> None:
        """Charge one failure to the account (nothing more once its budget is spent)."""
        await self._limiter.check(self._bucket(email))

    async def succeeded(self, email: str, *, network: str) -> None:
        """Remember ``network`` as one the account logs in from."""
        key = login_networks_key(account_subject(email))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {network: time.time()})
                pipe.zremrangebyrank(key, 0, -NETWORKS_REMEMBERED - 1)
                pipe.expire(key, NETWORK_MEMORY_SECONDS)
                await pipe.execute()
        except RedisError as exc:
            self._fallback.record("login_networks_write", exc)

    async def _known(self, email: str, network: str) -> bool:
        key = login_networks_key(account_subject(email))
        try:
            seen = await self._redis.zscore(key, network)
        except RedisError as exc:
            # Unknown, then: the stricter answer while Redis cannot say.
            self._fallback.record("login_networks_read", exc)
            return False
        return seen is not None and float(seen) > time.time() - NETWORK_MEMORY_SECONDS
