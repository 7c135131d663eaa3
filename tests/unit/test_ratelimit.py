"""Rate limits without Redis: parsing the settings, finding the client address, the in-memory GCRA."""

from __future__ import annotations

import ipaddress

import pytest
from algoedge.ratelimit import Decision, InMemoryRateLimiter, RateLimiter, rate_limit_headers
from algoedge.rates import (
    UNKNOWN_CLIENT,
    IPNetwork,
    RateLimit,
    client_ip,
    client_network,
    parse_rate,
    parse_trusted_proxies,
)
from algoedge.redis_pipeline import PipelinedRedis
from prometheus_client import CollectorRegistry


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


class TestParseRate:
    @pytest.mark.parametrize(
        ("text", "requests", "seconds"),
        [
            ("100/900", 100, 900),
            (" 5 / 60 ", 5, 60),
            ("1/1", 1, 1),
            ("1000000/86400", 1_000_000, 86_400),
            ("010/060", 10, 60),
        ],
    )
    def test_should_read_requests_per_seconds(self, text: str, requests: int, seconds: int) -> None:
        assert parse_rate(text) == RateLimit(requests=requests, window_seconds=seconds)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "100",
            "100/",
            "/900",
            "100/900/1",
            "a/b",
            "-1/60",
            "1.5/60",
            "100/15m",
            "\uff11\uff10\uff10/900",
        ],
    )
    def test_should_refuse_a_malformed_rate(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"^must be REQUESTS/SECONDS .*like 100/900"):
            parse_rate(text)

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("0/60", "must allow from 1 to 1000000 requests"),
            ("1000001/60", "must allow from 1 to 1000000 requests"),
            ("100/0", "must have a window from 1 to 86400 seconds"),
            ("100/86401", "must have a window from 1 to 86400 seconds"),
        ],
    )
    def test_should_refuse_a_rate_out_of_bounds(self, text: str, reason: str) -> None:
        with pytest.raises(ValueError, match=f"^{reason}"):
            parse_rate(text)


class TestParseTrustedProxies:
    @pytest.mark.parametrize("text", ["", "  ", ","])
    def test_should_trust_nobody_when_empty(self, text: str) -> None:
        assert parse_trusted_proxies(text) == ()

    def test_should_read_ipv4_and_ipv6_networks(self) -> None:
        assert parse_trusted_proxies("10.0.0.0/8, fd00::/8,192.168.1.7") == nets(
            "10.0.0.0/8", "fd00::/8", "192.168.1.7/32"
        )

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("banana", "^has entry 1 that is not a CIDR network$"),
            ("10.0.0.0/8,10.0.0.0/33", "^has entry 2 that is not"),
            ("10.0.0.0/8,,fd00::/8,nope", "^has entry 4 that is not"),
            ("10.0.0.1/8", "^has host bits set in entry 1, so it is not a network address$"),
        ],
    )
    def test_should_name_the_bad_entry(self, text: str, reason: str) -> None:
        with pytest.raises(ValueError, match=reason):
            parse_trusted_proxies(text)


class TestClientIp:
    PROXIES = nets("10.0.0.0/8", "fd00::/8")

    def test_should_use_the_peer_when_no_proxy_is_trusted(self) -> None:
        assert client_ip("203.0.113.7", ["198.51.100.1"], ()) == "203.0.113.7"

    def test_should_ignore_forwarded_for_from_an_untrusted_peer(self) -> None:
        """A client that writes its own X-Forwarded-For does not pick its bucket."""
        assert client_ip("203.0.113.7", ["198.51.100.1"], self.PROXIES) == "203.0.113.7"

    def test_should_believe_a_trusted_proxy(self) -> None:
        assert client_ip("10.0.0.1", ["203.0.113.7"], self.PROXIES) == "203.0.113.7"

    def test_should_walk_a_chain_of_trusted_proxies_from_the_right(self) -> None:
        # The client forged the first entry; the load balancer and the ingress appended theirs.
        chain = "198.51.100.99, 203.0.113.7, 10.1.2.3"
        assert client_ip("10.0.0.1", [chain], self.PROXIES) == "203.0.113.7"

    def test_should_accept_several_header_values_joined(self) -> None:
        assert client_ip("10.0.0.1", ["203.0.113.7,10.9.9.9"], self.PROXIES) == "203.0.113.7"

    def test_should_read_every_header_line_not_only_the_first(self) -> None:
        """A proxy that appends a line of its own (rather than extend the client's) names the
        client in the last line; the client's own first line must not choose the bucket."""
        lines = ["198.51.100.99", "203.0.113.7"]
        assert client_ip("10.0.0.1", lines, self.PROXIES) == "203.0.113.7"
        assert client_ip("10.0.0.1", ["198.51.100.99, 10.3.3.3", "10.4.4.4"], self.PROXIES) == (
            "198.51.100.99"
        )

    def test_should_answer_the_leftmost_hop_when_every_hop_is_trusted(self) -> None:
        assert client_ip("10.0.0.1", ["10.5.5.5, 10.1.2.3"], self.PROXIES) == "10.5.5.5"

    def test_should_use_a_trusted_peer_without_forwarded_for(self) -> None:
        assert client_ip("10.0.0.1", [], self.PROXIES) == "10.0.0.1"
        assert client_ip("10.0.0.1", [""], self.PROXIES) == "10.0.0.1"

    def test_should_handle_ipv6(self) -> None:
        assert client_ip("fd00::1", ["2001:db8::42, fd00::2"], self.PROXIES) == "2001:db8::42"
        assert client_ip("2001:db8::9", ["2001:db8::42"], self.PROXIES) == "2001:db8::9"

    def test_should_treat_an_ipv4_mapped_peer_as_ipv4(self) -> None:
        assert client_ip("::ffff:10.0.0.1", ["203.0.113.7"], self.PROXIES) == "203.0.113.7"
        assert client_ip("::ffff:203.0.113.7", [], ()) == "203.0.113.7"

    def test_should_tolerate_ports_on_hops(self) -> None:
        assert client_ip("10.0.0.1", ["203.0.113.7:51234"], self.PROXIES) == "203.0.113.7"
        assert client_ip("10.0.0.1", ["[2001:db8::42]:443"], self.PROXIES) == "2001:db8::42"
        assert client_ip("10.0.0.1", ["[2001:db8::42]"], self.PROXIES) == "2001:db8::42"

    @pytest.mark.parametrize(
        ("forwarded_for", "expected"),
        [
            ("garbage", "10.0.0.1"),
            ("203.0.113.7, garbage", "10.0.0.1"),
            ("203.0.113.7, garbage, 10.2.2.2", "10.2.2.2"),
            ("203.0.113.7, , 10.2.2.2", "10.2.2.2"),
            ("[2001:db8::1", "10.0.0.1"),
            ("[2001:db8::1]:http", "10.0.0.1"),
            ("300.1.1.1", "10.0.0.1"),
            ("\x00\xff, 1.2.3.4/8", "10.0.0.1"),
        ],
    )
    def test_should_stop_at_the_last_good_hop_on_garbage(
        self, forwarded_for: str, expected: str
    ) -> None:
        assert client_ip("10.0.0.1", [forwarded_for], self.PROXIES) == expected

    def test_should_survive_an_odd_peer(self) -> None:
        assert client_ip(None, ["203.0.113.7"], self.PROXIES) == UNKNOWN_CLIENT
        assert client_ip("", ["203.0.113.7"], self.PROXIES) == UNKNOWN_CLIENT
        assert client_ip("not-an-address", ["203.0.113.7"], self.PROXIES) == "not-an-address"


class TestClientNetwork:
    def test_should_limit_an_ipv4_client_by_its_address(self) -> None:
        assert client_network("203.0.113.7") == "203.0.113.7"

    def test_should_limit_an_ipv6_client_by_its_64(self) -> None:
        """One subscriber gets a whole /64: per-address buckets would let it rotate addresses."""
        assert client_network("2001:db8:1:2::1") == "2001:db8:1:2::/64"
        assert client_network("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
        assert client_network("2001:db8:1:3::1") == "2001:db8:1:3::/64"

    def test_should_keep_what_is_not_an_address(self) -> None:
        assert client_network(UNKNOWN_CLIENT) == UNKNOWN_CLIENT


def user_and_ip(user: RateLimit, ip: RateLimit) -> list[tuple[str, RateLimit]]:
    return [("user:42", user), ("ip:203.0.113.7", ip)]


class TestInMemoryLimiter:
    def test_should_allow_exactly_the_burst_then_deny(self) -> None:
        limiter = InMemoryRateLimiter(clock=FakeClock())
        limit = RateLimit(requests=5, window_seconds=60)
        decisions = [limiter.check([("user:1", limit)]) for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
        assert all(d.degraded for d in decisions)
        denied = decisions[5]
        # One request's share (60 s / 5) must pass before the next is allowed.
        assert denied.retry_after_seconds == 12
        assert denied.reset_seconds == 60
        assert denied.limit == 5
        assert denied.scope == "user"

    def test_should_report_when_the_bucket_is_full_again(self) -> None:
        limiter = InMemoryRateLimiter(clock=FakeClock())
        decision = limiter.check([("user:1", RateLimit(requests=100, window_seconds=900))])
        assert (decision.remaining, decision.reset_seconds, decision.retry_after_seconds) == (
            99,
            9,
            0,
        )

    def test_should_return_the_budget_gradually(self) -> None:
        clock = FakeClock()
        limiter = InMemoryRateLimiter(clock=clock)
        limit = RateLimit(requests=4, window_seconds=4)
        for _ in range(4):
            assert limiter.check([("ip:a", limit)]).allowed
        assert not limiter.check([("ip:a", limit)]).allowed

        clock.advance(0.99)
        denied = limiter.check([("ip:a", limit)])
        assert not denied.allowed
        assert denied.retry_after_seconds == 1

        clock.advance(1.01)  # two of the four requests are back, not all four
        assert [limiter.check([("ip:a", limit)]).allowed for _ in range(3)] == [True, True, False]

        clock.advance(10)
        assert [limiter.check([("ip:a", limit)]).allowed for _ in range(5)] == [True] * 4 + [False]

    def test_should_not_charge_a_denied_request(self) -> None:
        clock = FakeClock()
        limiter = InMemoryRateLimiter(clock=clock)
        limit = RateLimit(requests=2, window_seconds=10)
        assert limiter.check([("ip:a", limit)]).allowed
        assert limiter.check([("ip:a", limit)]).allowed
        for _ in range(50):  # hammering while blocked does not push the wait further out
            assert limiter.check([("ip:a", limit)]).retry_after_seconds == 5
        clock.advance(5)
        assert limiter.check([("ip:a", limit)]).allowed

    def test_should_charge_user_and_ip_together_or_not_at_all(self) -> None:
        limiter = InMemoryRateLimiter(clock=FakeClock())
        user, ip = RateLimit(2, 60), RateLimit(3, 60)
        assert limiter.check(user_and_ip(user, ip)).allowed
        assert limiter.check(user_and_ip(user, ip)).allowed
        blocked = limiter.check(user_and_ip(user, ip))
        assert (blocked.allowed, blocked.scope) == (False, "user")
        # The blocked user did not spend the address's third request...
        other_user = limiter.check([("user:43", user), ("ip:203.0.113.7", ip)])
        assert (other_user.allowed, other_user.remaining, other_user.scope) == (True, 0, "ip")
        # ...and a user blocked by the address keeps their own budget for another address.
        by_ip = limiter.check([("user:44", user), ("ip:203.0.113.7", ip)])
        assert (by_ip.allowed, by_ip.scope) == (False, "ip")
        elsewhere = limiter.check([("user:44", user), ("ip:198.51.100.1", ip)])
        assert elsewhere.allowed
        assert elsewhere.remaining == 1

    def test_should_describe_the_key_that_waits_longest(self) -> None:
        limiter = InMemoryRateLimiter(clock=FakeClock())
        slow, fast = RateLimit(1, 600), RateLimit(1, 10)
        limiter.check([("user:1", slow), ("ip:a", fast)])
        decision = limiter.check([("user:1", slow), ("ip:a", fast)])
        assert (decision.allowed, decision.scope, decision.limit) == (False, "user", 1)
        assert decision.retry_after_seconds == 600

    def test_should_forget_full_buckets(self) -> None:
        clock = FakeClock()
        limiter = InMemoryRateLimiter(clock=clock)
        for n in range(20):
            limiter.check([(f"ip:{n}", RateLimit(10, 10))])
        assert len(limiter) == 20
        clock.advance(2)  # every bucket is full again after one emission interval (1 s)
        for _ in range(3):
            limiter.check([("ip:fresh", RateLimit(10, 10))])
        assert len(limiter) == 1

    def test_should_cap_tracked_keys_evicting_the_least_recent(self) -> None:
        limiter = InMemoryRateLimiter(clock=FakeClock(), max_keys=3)
        limit = RateLimit(1, 3600)
        for key in ("ip:a", "ip:b", "ip:c"):
            assert limiter.check([(key, limit)]).allowed
        assert not limiter.check([("ip:a", limit)]).allowed  # a denial does not refresh it
        assert limiter.check([("ip:d", limit)]).allowed
        assert len(limiter) == 3
        assert limiter.check([("ip:a", limit)]).allowed  # "a" was the oldest, so it was dropped
        assert not limiter.check([("ip:c", limit)]).allowed  # "c" is still remembered

    @pytest.mark.parametrize(
        "limits",
        [
            [],
            [("nocolon", RateLimit(1, 1))],
            [("user:", RateLimit(1, 1))],
            [("User:1", RateLimit(1, 1))],
            [("user:1", RateLimit(1, 1)), ("user:1", RateLimit(2, 1))],
        ],
    )
    def test_should_refuse_keys_it_cannot_label(self, limits: list[tuple[str, RateLimit]]) -> None:
        with pytest.raises(ValueError, match="rate-limit key"):
            InMemoryRateLimiter().check(limits)

    def test_should_accept_ipv6_subjects(self) -> None:
        decision = InMemoryRateLimiter().check([("ip:2001:db8::1", RateLimit(1, 1))])
        assert (decision.allowed, decision.scope) == (True, "ip")


class TestHeaders:
    def test_should_describe_an_allowed_request(self) -> None:
        decision = Decision(
            allowed=True,
            limit=100,
            remaining=99,
            reset_seconds=9,
            retry_after_seconds=0,
            scope="user",
        )
        assert rate_limit_headers(decision) == {
            "RateLimit-Limit": "100",
            "RateLimit-Remaining": "99",
            "RateLimit-Reset": "9",
        }

    def test_should_add_retry_after_when_denied(self) -> None:
        limiter = InMemoryRateLimiter(clock=FakeClock())
        limiter.check([("ip:a", RateLimit(1, 30))])
        decision = limiter.check([("ip:a", RateLimit(1, 30))])
        assert rate_limit_headers(decision) == {
            "RateLimit-Limit": "1",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": "30",
            "Retry-After": "30",
        }


class TestRateLimiter:
    def test_should_share_counters_between_limiters_of_one_registry(self) -> None:
        """Two limiters in one process (two apps in a test, say) must not collide in Prometheus."""
        registry = CollectorRegistry()
        # Constructing a client opens no connection; these are never used.
        clients = [
            PipelinedRedis.from_url("redis://127.0.0.1:1/0", timeout_seconds=1.0) for _ in range(2)
        ]
        first, second = (RateLimiter(c, registry=registry) for c in clients)
        assert registry.get_sample_value("algoedge_ratelimit_fallback_total") == 0
        decision = Decision(
            allowed=False,
            limit=3,
            remaining=0,
            reset_seconds=40,
            retry_after_seconds=20,
            scope="ip",
        )
        assert first.headers(decision) == second.headers(decision) == rate_limit_headers(decision)
        assert first.redis_key("ip:2001:db8::1") == "algoedge:rl:ip:2001:db8::1"
