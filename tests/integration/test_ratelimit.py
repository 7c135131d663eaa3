"""Rate limits on a real Redis: one budget for every pod, one round trip per check, and Redis dying."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from algoedge.ratelimit import InMemoryRateLimiter, RateLimiter
from algoedge.rates import RateLimit
from algoedge.redis_pipeline import PipelinedRedis
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from devtools.services import RedisServer

LimiterFactory = Callable[..., RateLimiter]


def connect(url: str, *, timeout: float = 2.0) -> Redis:
    client: Redis = Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    return client


def subject() -> str:
    """A user id no other test uses, so tests share the session's Redis without meeting."""
    return secrets.token_hex(6)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def make_limiter(
    redis_server: RedisServer, registry: CollectorRegistry
) -> AsyncIterator[LimiterFactory]:
    """Limiters with a Redis client each (the API's pipelined one), as separate API pods would have."""
    clients: list[PipelinedRedis] = []

    def make(url: str = redis_server.url, **options: object) -> RateLimiter:
        client = PipelinedRedis.from_url(url, timeout_seconds=2.0)
        clients.append(client)
        return RateLimiter(client, registry=registry, **options)  # type: ignore[arg-type]

    yield make
    for client in clients:
        await client.aclose()


async def test_should_allow_the_burst_then_deny_with_retry_after(
    make_limiter: LimiterFactory, redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    limiter = make_limiter()
    key = f"user:{subject()}"
    limit = RateLimit(requests=5, window_seconds=60)
    decisions = [await limiter.check([(key, limit)]) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    assert not any(d.degraded for d in decisions)
    denied = decisions[5]
    # One request's share of the window (60 s / 5) has to return first.
    assert 11 <= denied.retry_after_seconds <= 12
    assert 59 <= denied.reset_seconds <= 60
    assert registry.get_sample_value("algoedge_ratelimit_denied_total", {"scope": "user"}) == 2
    assert registry.get_sample_value("algoedge_ratelimit_fallback_total") == 0

    redis = connect(redis_server.url)
    try:
        ttl_ms = await redis.pttl(f"algoedge:rl:{key}")
    finally:
        await redis.aclose()
    assert 0 < ttl_ms <= 60_000


async def test_should_share_one_budget_between_pods(make_limiter: LimiterFactory) -> None:
    pods = [make_limiter(), make_limiter()]
    key = f"user:{subject()}"
    limit = RateLimit(requests=6, window_seconds=3600)
    outcomes = [(await pods[n % 2].check([(key, limit)])).allowed for n in range(10)]
    assert outcomes == [True] * 6 + [False] * 4


async def test_should_return_the_budget_gradually(make_limiter: LimiterFactory) -> None:
    """GCRA, not a fixed window: half the window later, about half the budget is back."""
    limiter = make_limiter()
    key = f"ip:{subject()}"
    limit = RateLimit(requests=4, window_seconds=4)
    assert [(await limiter.check([(key, limit)])).allowed for _ in range(5)] == [True] * 4 + [False]
    await asyncio.sleep(2.1)
    allowed = sum([(await limiter.check([(key, limit)])).allowed for _ in range(4)])
    # Two emission intervals (1 s each) have passed; a third only if this machine stalled.
    assert allowed in (2, 3)


async def test_should_charge_user_and_ip_together_or_not_at_all(
    make_limiter: LimiterFactory,
) -> None:
    limiter = make_limiter()
    ip = f"ip:203.0.113.{secrets.randbelow(250)}-{subject()}"
    user_limit, ip_limit = RateLimit(2, 3600), RateLimit(3, 3600)
    first, second, third = (f"user:{subject()}" for _ in range(3))

    for _ in range(2):
        assert (await limiter.check([(first, user_limit), (ip, ip_limit)])).allowed
    blocked = await limiter.check([(first, user_limit), (ip, ip_limit)])
    assert (blocked.allowed, blocked.scope) == (False, "user")

    # The blocked user's attempt did not spend the address's third request.
    last = await limiter.check([(second, user_limit), (ip, ip_limit)])
    assert (last.allowed, last.scope, last.remaining) == (True, "ip", 0)

    # Denied by the address: the new user's own budget is untouched.
    by_ip = await limiter.check([(third, user_limit), (ip, ip_limit)])
    assert (by_ip.allowed, by_ip.scope) == (False, "ip")
    elsewhere = await limiter.check([(third, user_limit), (f"ip:{subject()}", ip_limit)])
    assert (elsewhere.allowed, elsewhere.scope, elsewhere.remaining) == (True, "user", 1)


async def test_should_use_one_round_trip_per_check(
    make_limiter: LimiterFactory, redis_server: RedisServer
) -> None:
    limiter = make_limiter()
    limits = [(f"user:{subject()}", RateLimit(10, 60)), (f"ip:{subject()}", RateLimit(10, 60))]
    await limiter.check([(f"user:{subject()}", RateLimit(10, 60))])  # connects, loads the script
    marker = f"end-of-checks-{subject()}"
    watcher, other = connect(redis_server.url), connect(redis_server.url)
    try:
        await other.ping()  # connected and authenticated before the watch starts
        async with watcher.monitor() as monitor:

            async def commands_until_marker() -> list[tuple[str, str]]:
                seen: list[tuple[str, str]] = []
                while True:
                    info = await monitor.next_command()
                    if marker in info["command"]:
                        return seen
                    seen.append((info["client_type"], info["command"].split()[0].upper()))

            collecting = asyncio.create_task(commands_until_marker())
            for _ in range(3):
                await limiter.check(limits)
            await other.echo(marker)
            seen = await asyncio.wait_for(collecting, timeout=10)
    finally:
        await watcher.aclose()
        await other.aclose()
    from_clients = [command for client, command in seen if client != "lua"]
    assert from_clients == ["EVALSHA"] * 3
    inside_scripts = [command for client, command in seen if client == "lua"]
    assert inside_scripts.count("TIME") == 3


async def test_should_allow_exactly_the_limit_under_concurrency(
    make_limiter: LimiterFactory,
) -> None:
    limiter = make_limiter(timeout_seconds=30.0)
    key = f"user:{subject()}"
    limit = RateLimit(requests=50, window_seconds=3600)
    decisions = await asyncio.gather(*(limiter.check([(key, limit)]) for _ in range(200)))
    assert not any(d.degraded for d in decisions)
    assert sum(d.allowed for d in decisions) == 50


async def test_should_keep_limiting_in_memory_while_redis_is_down_and_come_back(
    tmp_path: Path,
    make_limiter: LimiterFactory,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer(root=tmp_path / "redis").start()
    try:
        limiter = make_limiter(
            server.url,
            fallback=InMemoryRateLimiter(),
            timeout_seconds=0.5,
            redis_retry_seconds=0.2,
        )
        limit = RateLimit(requests=3, window_seconds=3600)
        key = f"user:{subject()}"
        before = await limiter.check([(key, limit)])
        assert (before.allowed, before.degraded) == (True, False)

        server.kill()
        caplog.set_level(logging.WARNING, logger="algoedge.ratelimit")
        during = [await limiter.check([(key, limit)]) for _ in range(4)]
        assert all(d.degraded for d in during)
        # This process's memory starts empty, so it allows its own three and then refuses.
        assert [d.allowed for d in during] == [True, True, True, False]
        assert during[3].retry_after_seconds >= 1
        assert registry.get_sample_value("algoedge_ratelimit_fallback_total") == 4
        assert registry.get_sample_value("algoedge_ratelimit_denied_total", {"scope": "user"}) == 1
        warnings = [r for r in caplog.records if r.name == "algoedge.ratelimit"]
        assert len(warnings) == 1
        assert "Redis failed" in warnings[0].getMessage()

        server.start()  # same folder, same port, same password; its memory is empty
        fresh = f"user:{subject()}"
        deadline = time.monotonic() + 15
        after = await limiter.check([(fresh, limit)])
        while after.degraded and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            after = await limiter.check([(fresh, limit)])
        assert not after.degraded
        assert after.allowed
    finally:
        server.stop()
