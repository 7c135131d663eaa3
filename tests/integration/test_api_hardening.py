"""Issue 12 (part A): what a client or a burst cannot do to the API any more.

Memory under a login burst, client addresses a proxy chain cannot let the client choose, the
per-account login limit, registration that does not tell which e-mails have accounts, 503s
(not 500s) while Postgres cannot answer, and sessions a logout ends for good. docs/security.md
lists the threats these tests stand for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

import aiohttp
import jwt
import pytest
from algoedge.api.auth import REGISTERED
from algoedge.api.state import DATABASE, PASSWORDS
from algoedge.cache import SessionCache, session_key
from algoedge.config import ApiSettings
from algoedge.db import Database
from algoedge.hashing import HASH_MEMORY_MIB, peak_memory_mib
from algoedge.rates import RateLimit
from multidict import CIMultiDict
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from devtools.app import api_environment
from tests.integration.conftest import (
    RELAXED_LIMITS,
    ApiClient,
    running_api,
    spawn_api,
    stop_api,
)

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
PASSWORD = "correct horse battery"


def behind_proxy(settings: ApiSettings, **changes: object) -> ApiSettings:
    """The API behind a trusted proxy on loopback: X-Forwarded-For names the client."""
    return settings.model_copy(update={"trusted_proxies": (ip_network("127.0.0.0/8"),), **changes})


def forwarded(*lines: str) -> CIMultiDict[str]:
    """X-Forwarded-For header lines, each sent as a header of its own."""
    return CIMultiDict(("X-Forwarded-For", line) for line in lines)


async def login_status(
    api: ApiClient, email: str, password: str, *lines: str
) -> tuple[int, aiohttp.ClientResponse]:
    # Through the session directly: ApiClient.call folds repeated headers into one.
    async with api.session.post(
        api.base_url + LOGIN, json={"email": email, "password": password}, headers=forwarded(*lines)
    ) as response:
        await response.read()
        return response.status, response


# --- 1. password hashing within the pod's memory ---------------------------------------------


def peak_rss_mib(pid: int) -> float:
    """The process's resident-set high-water mark (VmHWM) since it was last reset."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")


@contextmanager
def api_pid(env: dict[str, str]) -> Iterator[tuple[int, str]]:
    """A running `algoedge api` process: its pid (to read its memory) and its base URL."""
    process, base = spawn_api(env)
    try:
        yield process.pid, base
    finally:
        stop_api(process)


class TestPasswordHashingWithinMemory:
    CONCURRENCY = 2

    async def test_should_keep_a_login_burst_within_the_sized_memory_answering_only_200_401_429_503(
        self, relaxed_settings: ApiSettings
    ) -> None:
        """Twelve concurrent verifications once took a pod from ~120 to ~830 MiB. The process
        must stay within what its hashing bound is sized for (algoedge.hashing.peak_memory_mib),
        and every answer be one a client can act on."""
        env = {
            **api_environment(relaxed_settings.database_url, relaxed_settings.redis_url),
            **RELAXED_LIMITS,
            "ALGOEDGE_PASSWORD_HASH_CONCURRENCY": str(self.CONCURRENCY),
            "ALGOEDGE_PASSWORD_HASH_QUEUE": "6",
        }
        with api_pid(env) as (pid, base):
            async with aiohttp.ClientSession() as http:
                credentials = {"email": "burst@example.com", "password": PASSWORD}
                async with http.post(f"{base}{REGISTER}", json={**credentials, "name": "B"}) as r:
                    assert r.status == 202
                reset_peak_rss(pid)
                baseline = peak_rss_mib(pid)

                async def attempt(n: int) -> tuple[int, str]:
                    body = {**credentials, "password": PASSWORD if n % 2 else "wrong-password"}
                    async with http.post(f"{base}{LOGIN}", json=body) as response:
                        await response.read()
                        return response.status, response.headers.get("Retry-After", "")

                answers = await asyncio.gather(*(attempt(n) for n in range(30)))
            peak = peak_rss_mib(pid)
        statuses = [status for status, _ in answers]
        assert set(statuses) <= {200, 401, 429, 503}, statuses
        assert {200, 401} <= set(statuses), "the burst must have hashed"
        assert all(retry for status, retry in answers if status in (429, 503))
        # The bound the arithmetic promises, and the same seen from the idle process: at most one
        # hash's worth beyond what CONCURRENCY hashes hold (allocator slack, request buffers).
        assert peak <= peak_memory_mib(self.CONCURRENCY), (baseline, peak)
        assert peak - baseline <= (self.CONCURRENCY + 1) * HASH_MEMORY_MIB, (baseline, peak)

    async def test_should_answer_503_with_retry_after_when_every_hashing_place_is_taken(
        self, relaxed_settings: ApiSettings
    ) -> None:
        settings = relaxed_settings.model_copy(
            update={"password_hash_concurrency": 1, "password_hash_queue": 1}
        )
        async with running_api(settings) as api:
            await api.register("busy@example.com")
            release = threading.Event()
            passwords = api.server.app[PASSWORDS]
            # The one hashing thread and the one place in its queue, held by real work.
            held = [asyncio.create_task(passwords.run(release.wait)) for _ in range(2)]
            await asyncio.sleep(0)
            try:
                for path, body in (
                    (LOGIN, {"email": "busy@example.com", "password": PASSWORD}),
                    (REGISTER, {"email": "new@example.com", "password": PASSWORD, "name": "N"}),
                ):
                    status, problem, response = await api.call("POST", path, json=body)
                    assert status == 503, problem
                    assert response.content_type == "application/problem+json"
                    assert int(response.headers["Retry-After"]) >= 1
            finally:
                release.set()
                await asyncio.gather(*held)
            assert await api.login("busy@example.com")


# --- 2. client addresses and login limits --------------------------------------------------


class TestClientAddress:
    async def test_should_read_every_x_forwarded_for_line(
        self, relaxed_settings: ApiSettings
    ) -> None:
        """A proxy that appends its own header line names the client there; a client that varies
        the first line must still land in one bucket."""
        settings = behind_proxy(relaxed_settings, rate_limit_auth=RateLimit(2, 60))
        async with running_api(settings) as api:
            statuses = [
                (
                    await login_status(
                        api, "x@example.com", "nope-nope", f"192.0.2.{n}", "198.51.100.7"
                    )
                )[0]
                for n in range(3)
            ]
            assert statuses == [401, 401, 429]
            # Another client behind the same proxy has its own budget.
            assert (await login_status(api, "x@example.com", "nope", "192.0.2.1", "198.51.100.8"))[
                0
            ] == 401

    async def test_should_limit_an_ipv6_client_by_its_64(
        self, relaxed_settings: ApiSettings
    ) -> None:
        settings = behind_proxy(relaxed_settings, rate_limit_auth=RateLimit(2, 60))
        async with running_api(settings) as api:
            statuses = [
                (await login_status(api, "v6@example.com", "nope-nope", f"2001:db8:1:2::{n}"))[0]
                for n in range(1, 4)
            ]
            assert statuses == [401, 401, 429]
            other = await login_status(api, "v6@example.com", "nope-nope", "2001:db8:1:3::1")
            assert other[0] == 401

    async def test_should_warn_once_when_forwarded_requests_arrive_without_trusted_proxies(
        self, api: ApiClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="algoedge.access"):
            await api.call("GET", "/api/v1/bots")
            assert not [r for r in caplog.records if "TRUSTED_PROXIES" in r.getMessage()]
            for n in range(3):
                await api.call("GET", "/api/v1/bots", headers={"X-Forwarded-For": f"192.0.2.{n}"})
        warnings = [r for r in caplog.records if "ALGOEDGE_TRUSTED_PROXIES" in r.getMessage()]
        assert len(warnings) == 1


class TestAccountLimit:
    @staticmethod
    def settings(relaxed: ApiSettings) -> ApiSettings:
        return behind_proxy(relaxed, rate_limit_account=RateLimit(3, 600))

    async def test_should_refuse_an_account_whose_failures_are_spent_from_every_new_address(
        self, relaxed_settings: ApiSettings
    ) -> None:
        """Guessing spread over addresses: each address is far within its own budget."""
        async with running_api(self.settings(relaxed_settings)) as api:
            await api.register("target@example.com")
            for n in range(3):
                status, _ = await login_status(
                    api, "target@example.com", f"guess-{n}", f"192.0.2.{n}"
                )
                assert status == 401
            # Even the right password, from yet another address: refused, without saying so.
            status, response = await login_status(api, "TARGET@example.com", PASSWORD, "192.0.2.9")
            assert status == 429
            assert response.content_type == "application/problem+json"
            assert int(response.headers["Retry-After"]) >= 1
            # Another account is not affected.
            await api.register("bystander@example.com")
            assert (await login_status(api, "bystander@example.com", PASSWORD, "192.0.2.9"))[
                0
            ] == 200

    async def test_should_let_the_owner_in_from_a_network_they_logged_in_from_before(
        self, relaxed_settings: ApiSettings
    ) -> None:
        """The limit must not be a way to lock the owner out: their own network stays open."""
        async with running_api(self.settings(relaxed_settings)) as api:
            await api.register("owner@example.com")
            assert (await login_status(api, "owner@example.com", PASSWORD, "2001:db8:5:5::10"))[
                0
            ] == 200
            for n in range(4):
                await login_status(api, "owner@example.com", f"guess-{n}", f"203.0.113.{n}")
            assert (await login_status(api, "owner@example.com", PASSWORD, "203.0.113.50"))[
                0
            ] == 429
            # The owner's network (another address in the same /64): still in.
            assert (await login_status(api, "owner@example.com", PASSWORD, "2001:db8:5:5::99"))[
                0
            ] == 200

    async def test_should_not_charge_successful_logins(self, relaxed_settings: ApiSettings) -> None:
        async with running_api(self.settings(relaxed_settings)) as api:
            await api.register("regular@example.com")
            statuses = [
                (await login_status(api, "regular@example.com", PASSWORD, f"192.0.2.{n}"))[0]
                for n in range(6)
            ]
            assert statuses == [200] * 6


# --- 3. registration does not tell which e-mails have accounts --------------------------------


def hashes_computed() -> float:
    return REGISTRY.get_sample_value("algoedge_password_hashes_total", {"operation": "hash"}) or 0.0


@dataclass
class Deliveries:
    settings: ApiSettings

    async def rows(self, email: str) -> list[tuple[Any, ...]]:
        db = await Database.connect(self.settings)
        try:
            async with db.cursor() as cur:
                await cur.execute(
                    "SELECT d.kind, d.key, d.enqueued_at IS NOT NULL FROM email_deliveries d "
                    "JOIN users u ON u.id = d.user_id WHERE u.email = %s ORDER BY d.id",
                    (email,),
                )
                return [tuple(row) for row in await cur.fetchall()]
        finally:
            await db.close()


class TestRegisterAnswersAlike:
    async def test_should_answer_a_taken_email_as_a_new_one_and_tell_its_owner_once_a_day(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        first = await api.call(
            "POST", REGISTER, json={"email": "kim@example.com", "password": PASSWORD, "name": "Kim"}
        )
        again = await api.call(
            "POST",
            REGISTER,
            json={"email": "KIM@example.com", "password": "another-password", "name": "Mallory"},
        )
        assert (
            (first[0], first[1])
            == (again[0], again[1])
            == (202, {"email": "kim@example.com", "message": REGISTERED})
        )
        assert first[2].content_type == again[2].content_type == "application/json"
        # The account is untouched: its own password, its own name.
        token = await api.login("kim@example.com")
        assert (await api.call("GET", "/api/v1/me", token=token))[1]["name"] == "Kim"
        assert (
            await api.call(
                "POST", LOGIN, json={"email": "kim@example.com", "password": "another-password"}
            )
        )[0] == 401
        # The owner hears of it by e-mail, queued like the welcome; again today: no more mail.
        await api.call(
            "POST", REGISTER, json={"email": "kim@example.com", "password": PASSWORD, "name": "K"}
        )
        rows = await Deliveries(relaxed_settings).rows("kim@example.com")
        assert [(kind, queued) for kind, _, queued in rows] == [
            ("welcome", True),
            ("registration_attempt", True),
        ]
        redis = Redis.from_url(relaxed_settings.redis_url)
        try:
            assert await redis.llen("emails") == 2
        finally:
            await redis.aclose()

    async def test_should_hash_the_password_whether_or_not_the_email_is_taken(
        self, api: ApiClient
    ) -> None:
        """Both branches cost one argon2id hash, so the response time does not tell them apart."""
        body = {"email": "lee@example.com", "password": PASSWORD, "name": "Lee"}
        before = hashes_computed()
        assert (await api.call("POST", REGISTER, json=body))[0] == 202
        assert hashes_computed() == before + 1
        assert (await api.call("POST", REGISTER, json=body))[0] == 202
        assert hashes_computed() == before + 2


# --- 4. Postgres unavailable: 503, not 500 ---------------------------------------------------


class TestDatabaseUnavailable:
    async def test_should_answer_503_with_retry_after_when_the_pool_is_exhausted(
        self, relaxed_settings: ApiSettings, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = relaxed_settings.model_copy(
            update={"db_pool_min": 1, "db_pool_max": 1, "db_timeout": 1.0}
        )
        async with running_api(settings) as api:
            _, token = await api.signed_up()
            with caplog.at_level(logging.INFO):
                # The pool's only connection, held as a slow request would hold it.
                async with api.server.app[DATABASE].cursor():
                    answers = [
                        await api.call("GET", "/api/v1/accounts", token=token) for _ in range(3)
                    ]
            for status, problem, response in answers:
                assert status == 503, problem
                assert response.content_type == "application/problem+json"
                assert int(response.headers["Retry-After"]) >= 1
            assert (await api.call("GET", "/api/v1/accounts", token=token))[0] == 200
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# --- 5. sessions: a logout holds, expired sessions go -----------------------------------------


class TestSessionEnd:
    async def test_should_not_let_a_late_refill_revive_a_session_ended_by_logout(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        """A reader that found the session live in Postgres just before a concurrent logout
        refills Redis only after the logout: the token must stay refused on every pod."""
        user_id, token = await api.signed_up()
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        redis = Redis.from_url(relaxed_settings.redis_url, decode_responses=True)
        try:
            async with running_api(relaxed_settings) as other_pod:
                # Redis lost the session (a restart), so the next read goes to Postgres and
                # refills it.
                await redis.delete(session_key(jti))
                assert (await other_pod.call("GET", "/api/v1/me", token=token))[0] == 200
                assert await redis.get(session_key(jti)) == str(user_id)
                await redis.delete(session_key(jti))
                assert (await api.call("POST", "/api/v1/auth/logout", token=token))[0] == 204
                # The late refill of that reader, exactly as the API writes it.
                assert not await SessionCache(redis).refill(jti, user_id, ttl_seconds=600)
                # The other pod never saw the logout: only Redis can tell it.
                assert (await other_pod.call("GET", "/api/v1/me", token=token))[0] == 401
        finally:
            await redis.aclose()
