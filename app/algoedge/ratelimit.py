"""Request rate limits shared by every API pod through Redis (GCRA), with an in-process fallback.

Each subject (an authenticated user, a client IP, ...) has one bucket, checked with the Generic
Cell Rate Algorithm: a limit of ``REQUESTS/SECONDS`` allows a burst of ``REQUESTS`` and then one
request every ``SECONDS / REQUESTS``, so the budget comes back gradually instead of all at once
at a window boundary. A bucket is a single Redis string, ``<prefix>:<scope>:<subject>``, holding
its theoretical arrival time (TAT) in microseconds of Redis server time since
:data:`TAT_EPOCH_SECONDS`, with a TTL equal to the time until the bucket is full again (never
more than the window). All the keys of one request are checked and charged in one Lua script,
so a request is allowed only when every key allows it, and a denied request charges none. The
same script can also read a few other keys when (and only when) the request is allowed
(:meth:`RateLimiter.check_and_read`): the API reads a request's session and user there, so an
authenticated request costs one Redis round trip, limited before anything about it is looked up.

When Redis fails, :class:`InMemoryRateLimiter` gives the same answers from this process's
memory until Redis answers again. This module knows nothing about aiohttp; the API's middleware
turns a :class:`Decision` into a response with :func:`rate_limit_headers`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from redis.exceptions import RedisError

from algoedge.rates import MICROS as _MICROS
from algoedge.rates import RateLimit
from algoedge.redis_pipeline import PipelinedRedis

log = logging.getLogger(__name__)


# TATs are stored relative to this instant (2023-11-14) rather than 1970: the numbers stay
# near 2**46 microseconds, where a Lua double still resolves a hundredth of a microsecond.
TAT_EPOCH_SECONDS: Final = 1_700_000_000

# A request may arrive this fraction of an emission interval early and still be allowed, so
# float rounding in a run of additions never refuses the last request of a full burst.
_TOLERANCE: Final = 1e-3
_SCOPE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_WARNING_INTERVAL_SECONDS: Final = 30.0


class Decision(NamedTuple):
    """The answer for one request, described by its most restrictive key.

    A named tuple, not a frozen dataclass: one is built for every request, in half the time."""

    allowed: bool
    limit: int
    """REQUESTS of the deciding key's limit."""
    remaining: int
    """Requests that key would still allow right now (0 when denied)."""
    reset_seconds: int
    """Seconds until that key's budget is full again."""
    retry_after_seconds: int
    """0 when allowed; otherwise seconds (at least 1) until this request would be allowed."""
    scope: str
    """The deciding key's scope (``user``, ``ip``, ...), for logs and metrics."""
    degraded: bool = False
    """True when Redis failed and this process's own memory answered."""


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The IETF draft RateLimit header fields (integer seconds), plus Retry-After when denied."""
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_seconds),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after_seconds)
    return headers


class _KeyOutcome(NamedTuple):
    """One key's GCRA answer, in microseconds, whether Redis or memory computed it."""

    allowed: bool
    remaining: int
    reset_us: float
    retry_after_us: float


def _ceil_seconds(micros: float) -> int:
    return max(0, math.ceil(micros / _MICROS))


def _decide(
    limits: Sequence[tuple[str, RateLimit]], outcomes: Sequence[_KeyOutcome], *, degraded: bool
) -> Decision:
    """Pick the key that tells the client the most: the one that waits longest, or has least left."""
    # A plain loop: this runs on every request (a closure per min()/max() cost more here).
    best = 0
    allowed = all(o.allowed for o in outcomes)
    for i in range(1, len(outcomes)):
        o, b = outcomes[i], outcomes[best]
        if allowed:
            if (o.remaining, -o.reset_us) < (b.remaining, -b.reset_us):
                best = i
        elif not o.allowed and (b.allowed or o.retry_after_us > b.retry_after_us):
            best = i
    outcome = outcomes[best]
    key, limit = limits[best]
    return Decision(
        allowed=allowed,
        limit=limit.requests,
        remaining=outcome.remaining if allowed else 0,
        reset_seconds=_ceil_seconds(outcome.reset_us),
        retry_after_seconds=0 if allowed else max(1, _ceil_seconds(outcome.retry_after_us)),
        scope=_scope_of(key),
        degraded=degraded,
    )


def _scope_of(key: str) -> str:
    return key.partition(":")[0]


# Scopes already found well-formed: they are a few names chosen in code, so each is checked once.
_CHECKED_SCOPES: set[str] = set()


def _validate(limits: Sequence[tuple[str, RateLimit]]) -> None:
    if not limits:
        raise ValueError("no rate-limit keys to check")
    if len(limits) > 1 and len({key for key, _ in limits}) != len(limits):
        raise ValueError("the same rate-limit key appears twice in one check")
    for key, _ in limits:
        scope, sep, subject = key.partition(":")
        if scope in _CHECKED_SCOPES and subject:
            continue
        # The scope becomes a metric label, so it must be one of a few names the code chose.
        if not sep or not subject or not _SCOPE.fullmatch(scope):
            raise ValueError("a rate-limit key must look like <scope>:<subject>, e.g. user:42")
        _CHECKED_SCOPES.add(scope)


def _gcra(stored_tat: float | None, now: float, limit: RateLimit) -> tuple[_KeyOutcome, float]:
    """One GCRA step (times in microseconds): the outcome and the TAT to store if charged.

    _LUA below is the same computation; a change to one changes the other.
    """
    interval = limit.interval_us
    tat = now if stored_tat is None or stored_tat < now else stored_tat
    new_tat = tat + interval
    allow_at = new_tat - limit.window_us
    if allow_at - now <= interval * _TOLERANCE:
        remaining = max(0, math.floor((now - allow_at) / interval + _TOLERANCE))
        return _KeyOutcome(True, remaining, new_tat - now, 0.0), new_tat
    return _KeyOutcome(False, 0, tat - now, allow_at - now), new_tat


# KEYS[i], i <= n: one bucket per subject. ARGV[2i-1], ARGV[2i]: its emission interval and
# window (µs); the argument after the last pair is 1 to charge an allowed request, 0 to only
# look (so n = (#ARGV - 1) / 2). KEYS after the n buckets are only read, and only when the
# request is allowed. Returns {allowed, then per bucket: remaining, reset µs, retry-after µs,
# then, when allowed, each read key's value (nil when absent)}. TIME is Redis server time, so
# pods whose clocks disagree still share one timeline. Keep in step with _gcra.
_LUA: Final = f"""
local t = redis.call('TIME')
local now = (tonumber(t[1]) - {TAT_EPOCH_SECONDS}) * 1000000 + tonumber(t[2])
local n = (#ARGV - 1) / 2
local allowed = 1
local reply = {{0}}
local tats = {{}}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - window
  tats[i] = new_tat
  if allow_at - now <= interval * {_TOLERANCE} then
    local remaining = math.floor((now - allow_at) / interval + {_TOLERANCE})
    if remaining < 0 then remaining = 0 end
    table.insert(reply, remaining)
    table.insert(reply, math.ceil(new_tat - now))
    table.insert(reply, 0)
  else
    allowed = 0
    table.insert(reply, 0)
    table.insert(reply, math.ceil(tat - now))
    table.insert(reply, math.ceil(allow_at - now))
  end
end
if allowed == 1 and ARGV[2 * n + 1] == '1' then
  for i = 1, n do
    local ttl_ms = math.ceil((tats[i] - now) / 1000)
    redis.call('SET', KEYS[i], string.format('%.17g', tats[i]), 'PX', ttl_ms)
  end
end
if allowed == 1 then
  for i = n + 1, #KEYS do
    table.insert(reply, redis.call('GET', KEYS[i]))
  end
end
reply[1] = allowed
return reply
"""


class InMemoryRateLimiter:
    """The same GCRA in this process's memory: the fallback while Redis cannot answer.

    Buckets live in an LRU map capped at ``max_keys``; a bucket whose TAT has passed holds no
    information (it is full) and is dropped when seen. Evicting a live bucket forgets that
    subject's usage, which is the price of bounded memory under a flood of distinct IPs.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._clock = clock
        self._max_keys = max_keys
        self._tats: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        """Buckets currently tracked."""
        return len(self._tats)

    def check(self, limits: Sequence[tuple[str, RateLimit]], *, charge: bool = True) -> Decision:
        """Allow and charge every key, or charge none; synchronous, so atomic within the loop.

        With ``charge=False`` the answer is the same but nothing is charged."""
        _validate(limits)
        now = self._clock() * _MICROS
        self._evict_expired(now)
        steps = [_gcra(self._tats.get(key), now, limit) for key, limit in limits]
        outcomes = [outcome for outcome, _ in steps]
        if charge and all(o.allowed for o in outcomes):
            for (key, _), (_, new_tat) in zip(limits, steps, strict=True):
                self._tats[key] = new_tat
                self._tats.move_to_end(key)
            while len(self._tats) > self._max_keys:
                self._tats.popitem(last=False)
        return _decide(limits, outcomes, degraded=True)

    def _evict_expired(self, now: float) -> None:
        # The least recently charged buckets come first; a few per call keeps this O(1).
        for _ in range(8):
            if not self._tats:
                return
            key, tat = next(iter(self._tats.items()))
            if tat > now:
                return
            del self._tats[key]


@dataclass(frozen=True)
class _Metrics:
    fallback: Counter
    denied: Counter


# One set of counters per registry, so several limiters in a process (or in a test) share them.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    metrics = _METRICS.get(registry)
    if metrics is None:
        metrics = _Metrics(
            fallback=Counter(
                "algoedge_ratelimit_fallback_total",
                "Rate-limit checks answered from process memory because Redis failed.",
                registry=registry,
            ),
            denied=Counter(
                "algoedge_ratelimit_denied_total",
                "Requests refused by a rate limit, by the scope of the key that refused them.",
                ["scope"],
                registry=registry,
            ),
        )
        _METRICS[registry] = metrics
    return metrics


class RateLimiter:
    """Checks a request's keys against Redis in one round trip, or against memory while Redis is down.

    After a Redis failure the limiter answers from ``fallback`` for ``redis_retry_seconds``
    before one request tries Redis again, so an unreachable Redis costs one slow request per
    interval rather than every request. ``timeout_seconds`` bounds one Redis attempt, including
    redis-py's own retries.
    """

    def __init__(
        self,
        redis: PipelinedRedis,
        *,
        prefix: str = "algoedge:rl",
        fallback: InMemoryRateLimiter | None = None,
        registry: CollectorRegistry = REGISTRY,
        timeout_seconds: float = 1.0,
        redis_retry_seconds: float = 1.0,
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(_LUA)
        self._prefix = prefix
        self._fallback = fallback if fallback is not None else InMemoryRateLimiter()
        self._metrics = _metrics_for(registry)
        self._timeout_seconds = timeout_seconds
        self._redis_retry_seconds = redis_retry_seconds
        # time.monotonic() before which Redis is not tried; 0.0 while Redis is healthy.
        self._redis_down_until = 0.0
        self._last_warning = -math.inf

    @staticmethod
    def headers(decision: Decision) -> dict[str, str]:
        """The response headers for ``decision``; see :func:`rate_limit_headers`."""
        return rate_limit_headers(decision)

    def redis_key(self, key: str) -> str:
        """The Redis key holding ``key``'s bucket."""
        return f"{self._prefix}:{key}"

    async def check(
        self, limits: Sequence[tuple[str, RateLimit]], *, charge: bool = True
    ) -> Decision:
        """Allow the request only if every ``(key, limit)`` allows it; charge every key or none.

        Keys look like ``user:<id>`` or ``ip:<address>``; the part before the first colon is the
        scope reported in metrics, so it must come from a small fixed set. One key must always
        be checked with the same limit (use another scope for another route class).

        ``charge=False`` only looks: nothing is charged and a denial is not counted, because
        the caller decides whether it refuses (then it calls :meth:`count_denied`).
        """
        decision, _ = await self.check_and_read(limits, (), charge=charge)
        return decision

    async def check_and_read(
        self,
        limits: Sequence[tuple[str, RateLimit]],
        read: Sequence[str],
        *,
        charge: bool = True,
    ) -> tuple[Decision, list[str | None] | None]:
        """:meth:`check`, and in the same Redis round trip, only if the request is allowed, the
        values of the Redis keys ``read`` (full key names; None where a key is absent).

        The values are None when nothing was read: the request was denied, or Redis failed and
        memory answered (the caller reads them itself then, and meets the same failure).
        """
        _validate(limits)
        answered = await self._check_redis(limits, read, charge=charge)
        if answered is None:
            decision, values = self._check_fallback(limits, charge=charge), None
        else:
            decision, values = answered
        if charge and not decision.allowed:
            self.count_denied(decision)
        return decision, values

    def count_denied(self, decision: Decision) -> None:
        """Count a request refused because of ``decision`` (by its deciding key's scope)."""
        self._metrics.denied.labels(scope=decision.scope).inc()

    async def _check_redis(
        self, limits: Sequence[tuple[str, RateLimit]], read: Sequence[str], *, charge: bool
    ) -> tuple[Decision, list[str | None] | None] | None:
        now = time.monotonic()
        if now < self._redis_down_until:
            return None
        was_down = self._redis_down_until > 0.0
        if was_down:
            # This request probes; the others keep using memory until it has an answer.
            self._redis_down_until = now + self._redis_retry_seconds
        keys = [self.redis_key(key) for key, _ in limits] + list(read)
        args: list[str] = []
        for _, limit in limits:
            args += [repr(limit.interval_us), str(limit.window_us)]
        args.append("1" if charge else "0")
        try:
            async with asyncio.timeout(self._timeout_seconds):
                reply = await self._script(keys=keys, args=args)
            outcomes, values = _parse_reply(reply, len(limits), len(read))
        except (RedisError, OSError, ValueError) as exc:
            # TimeoutError is an OSError: a slow Redis is handled like an absent one.
            self._redis_down_until = time.monotonic() + self._redis_retry_seconds
            self._warn(exc)
            return None
        if was_down:
            self._redis_down_until = 0.0
            log.info("rate limits are shared through Redis again")
        return _decide(limits, outcomes, degraded=False), values

    def _check_fallback(self, limits: Sequence[tuple[str, RateLimit]], *, charge: bool) -> Decision:
        self._metrics.fallback.inc()
        try:
            return self._fallback.check(limits, charge=charge)
        except Exception:
            # Never expected; if it happens, let the request through rather than fail it.
            log.exception("in-memory rate limiter failed; allowing the request unlimited")
            limit = limits[0][1]
            return Decision(
                allowed=True,
                limit=limit.requests,
                remaining=limit.requests,
                reset_seconds=0,
                retry_after_seconds=0,
                scope=_scope_of(limits[0][0]),
                degraded=True,
            )

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning < _WARNING_INTERVAL_SECONDS:
            return
        self._last_warning = now
        log.warning(
            "Redis failed during a rate-limit check (%s: %s); limiting per process in memory "
            "until it answers (this warning repeats at most every %.0f s)",
            type(exc).__name__,
            exc,
            _WARNING_INTERVAL_SECONDS,
        )


def _parse_reply(
    reply: Any, count: int, reads: int
) -> tuple[list[_KeyOutcome], list[str | None] | None]:
    """The outcome of each of ``count`` buckets and, when allowed, the ``reads`` values."""
    if not isinstance(reply, list) or not reply:
        raise ValueError(f"unexpected rate-limit script reply: {reply!r}")
    allowed = int(reply[0]) == 1
    if len(reply) != 1 + 3 * count + (reads if allowed else 0):
        raise ValueError(f"unexpected rate-limit script reply: {reply!r}")
    outcomes = []
    for i in range(1, 1 + 3 * count, 3):
        remaining, reset_us, retry_us = int(reply[i]), int(reply[i + 1]), int(reply[i + 2])
        outcomes.append(_KeyOutcome(allowed or retry_us == 0, remaining, reset_us, retry_us))
    values = [_text(v) for v in reply[1 + 3 * count :]] if allowed else None
    return outcomes, values


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else None if value is None else str(value)
