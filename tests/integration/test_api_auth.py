"""Register, log in, log out, /me: tokens and sessions across pods, caching, and bad input."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from algoedge.api.auth import REGISTERED
from algoedge.auth import Tokens
from algoedge.cache import user_key
from algoedge.config import ApiSettings
from algoedge.db import Database
from redis.asyncio import Redis

from tests.integration.conftest import ApiClient, running_api

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"


class TestRegister:
    async def test_should_accept_a_user_with_a_lower_cased_email(self, api: ApiClient) -> None:
        status, body, _ = await api.call(
            "POST",
            REGISTER,
            json={"email": "Ada@Example.COM", "password": "s3cret-passw0rd", "name": "Ada"},
        )
        assert status == 202
        assert body == {"email": "ada@example.com", "message": REGISTERED}
        token = await api.login("ADA@example.com", "s3cret-passw0rd")
        assert (await api.call("GET", "/api/v1/me", token=token))[1]["name"] == "Ada"

    async def test_should_record_and_queue_exactly_one_welcome_email(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        await api.register("erin@example.com")
        db = await Database.connect(relaxed_settings)
        try:
            async with db.cursor() as cur:
                await cur.execute(
                    "SELECT d.id, d.key, d.user_id, d.kind, d.status, d.enqueued_at IS NOT NULL, "
                    "u.id FROM email_deliveries d JOIN users u ON u.email = 'erin@example.com'"
                )
                rows = await cur.fetchall()
        finally:
            await db.close()
        user_id = rows[0][6]
        assert [row[1:6] for row in rows] == [
            (f"welcome:{user_id}", user_id, "welcome", "pending", True)
        ]
        redis = Redis.from_url(relaxed_settings.redis_url)
        try:
            queued = await redis.lrange("emails", 0, -1)
        finally:
            await redis.aclose()
        assert len(queued) == 1
        message = json.loads(queued[0])
        assert message["headers"]["task"] == "algoedge.emails.send"
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        assert args == [rows[0][0]]

    async def test_should_name_every_invalid_field(self, api: ApiClient) -> None:
        status, body, _ = await api.call(
            "POST", REGISTER, json={"email": "not-an-email", "password": "short", "extra": 1}
        )
        assert status == 422
        fields = {e["field"] for e in body["errors"]}
        assert fields == {"email", "password", "name", "extra"}

    @pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
    async def test_should_answer_400_to_a_body_that_is_not_a_json_object(
        self, api: ApiClient, raw: bytes
    ) -> None:
        status, body, response = await api.call(
            "POST", REGISTER, data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 400
        assert response.content_type == "application/problem+json"
        assert body["title"] == "Bad Request"

    async def test_should_answer_413_to_a_body_over_one_mebibyte(self, api: ApiClient) -> None:
        big = json.dumps({"email": "a@b.cd", "password": "x" * (1024 * 1024), "name": "n"})
        status, body, _ = await api.call(
            "POST", REGISTER, data=big, headers={"Content-Type": "application/json"}
        )
        assert status == 413
        assert body["status"] == 413


class TestLogin:
    async def test_should_return_a_bearer_token(self, api: ApiClient) -> None:
        await api.register("carol@example.com")
        status, body, _ = await api.call(
            "POST", LOGIN, json={"email": "CAROL@example.com", "password": "correct horse battery"}
        )
        assert status == 200
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 3600
        assert len(body["access_token"].split(".")) == 3

    async def test_should_say_the_same_for_a_wrong_password_and_an_unknown_email(
        self, api: ApiClient
    ) -> None:
        await api.register("dave@example.com")
        wrong = await api.call(
            "POST", LOGIN, json={"email": "dave@example.com", "password": "nope-nope"}
        )
        unknown = await api.call(
            "POST", LOGIN, json={"email": "nobody@example.com", "password": "nope-nope"}
        )
        assert wrong[0] == unknown[0] == 401
        assert wrong[1]["detail"] == unknown[1]["detail"]


class TestTokens:
    async def test_should_require_a_token_for_me(self, api: ApiClient) -> None:
        status, _, response = await api.call("GET", "/api/v1/me")
        assert status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.content_type == "application/problem+json"

    async def test_should_refuse_forged_expired_and_unsigned_tokens(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        user_id, _ = await api.signed_up()
        now = datetime.now(UTC)
        forged = Tokens("x" * 32, ttl_seconds=3600).issue(user_id, now=now).token
        expired = (
            Tokens(relaxed_settings.jwt_secret.get_secret_value(), ttl_seconds=300)
            .issue(user_id, now=now - timedelta(hours=1))
            .token
        )
        unsigned = jwt.encode(
            {
                "sub": str(user_id),
                "jti": "x",
                "iat": now,
                "exp": now + timedelta(hours=1),
                "iss": "algoedge",
            },
            key="",
            algorithm="none",
        )
        for token in (forged, expired, unsigned, "garbage"):
            status, _, _ = await api.call("GET", "/api/v1/me", token=token)
            assert status == 401, token
        status, body, _ = await api.call("GET", "/api/v1/me", token=expired)
        assert "expired" in body["detail"]

    async def test_should_refuse_a_validly_signed_token_without_a_session(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        user_id, _ = await api.signed_up()
        minted = Tokens(relaxed_settings.jwt_secret.get_secret_value(), ttl_seconds=3600).issue(
            user_id, now=datetime.now(UTC)
        )
        status, _, _ = await api.call("GET", "/api/v1/me", token=minted.token)
        assert status == 401


class TestAcrossPods:
    async def test_should_end_a_session_on_every_pod_at_logout(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        _, token = await api.signed_up()
        async with running_api(relaxed_settings) as other_pod:
            assert (await other_pod.call("GET", "/api/v1/me", token=token))[0] == 200
            status, _, _ = await api.call("POST", "/api/v1/auth/logout", token=token)
            assert status == 204
            assert (await other_pod.call("GET", "/api/v1/me", token=token))[0] == 401
            assert (await api.call("GET", "/api/v1/me", token=token))[0] == 401

    async def test_should_show_a_rename_on_the_very_next_read_on_another_pod(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        _, token = await api.signed_up()
        async with running_api(relaxed_settings) as other_pod:
            assert (await other_pod.call("GET", "/api/v1/me", token=token))[1]["name"] == "Trader"
            status, body, _ = await api.call(
                "PATCH", "/api/v1/me", token=token, json={"name": "Renamed"}
            )
            assert (status, body["name"]) == (200, "Renamed")
            assert (await other_pod.call("GET", "/api/v1/me", token=token))[1]["name"] == "Renamed"

    async def test_should_turn_report_emails_on_and_off_visibly_on_every_pod(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        _, token = await api.signed_up()
        async with running_api(relaxed_settings) as other_pod:
            assert (await other_pod.call("GET", "/api/v1/me", token=token))[1][
                "email_reports"
            ] is False
            status, body, _ = await api.call(
                "PATCH", "/api/v1/me", token=token, json={"email_reports": True}
            )
            assert status == 200
            assert (body["name"], body["email_reports"]) == ("Trader", True)
            me = (await other_pod.call("GET", "/api/v1/me", token=token))[1]
            assert (me["name"], me["email_reports"]) == ("Trader", True)
            # A rename leaves the setting alone, and the reverse.
            await api.call("PATCH", "/api/v1/me", token=token, json={"name": "Renamed"})
            me = (await other_pod.call("GET", "/api/v1/me", token=token))[1]
            assert (me["name"], me["email_reports"]) == ("Renamed", True)
            body = {"email_reports": False}
            assert (await other_pod.call("PATCH", "/api/v1/me", token=token, json=body))[0] == 200
            me = (await api.call("GET", "/api/v1/me", token=token))[1]
            assert (me["name"], me["email_reports"]) == ("Renamed", False)

    async def test_should_treat_a_cached_user_without_email_reports_as_a_miss(
        self, api: ApiClient, relaxed_settings: ApiSettings
    ) -> None:
        user_id, token = await api.signed_up()
        await api.call("PATCH", "/api/v1/me", token=token, json={"email_reports": True})
        redis = Redis.from_url(relaxed_settings.redis_url, decode_responses=True)
        try:
            # What a pod of the previous release wrote (same version, no email_reports).
            cached = json.loads(await redis.get(user_key(user_id)))
            del cached["email_reports"]
            await redis.set(user_key(user_id), json.dumps(cached))
            status, body, _ = await api.call("GET", "/api/v1/me", token=token)
            assert (status, body["email_reports"]) == (200, True)
            assert json.loads(await redis.get(user_key(user_id)))["email_reports"] is True
        finally:
            await redis.aclose()

    async def test_should_refuse_an_invalid_profile_change(self, api: ApiClient) -> None:
        _, token = await api.signed_up()
        for body in (
            {"name": ""},
            {"name": "x" * 201},
            {"email": "x@y.zz"},
            {},
            {"name": None},
            {"email_reports": None},
            {"email_reports": "true"},
            {"email_reports": 1},
        ):
            status, problem, _ = await api.call("PATCH", "/api/v1/me", token=token, json=body)
            assert status == 422, body
            assert problem["errors"]
        me = (await api.call("GET", "/api/v1/me", token=token))[1]
        assert (me["name"], me["email_reports"]) == ("Trader", False)
