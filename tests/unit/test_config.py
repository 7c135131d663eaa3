"""Settings: every ALGOEDGE_* variable is validated at start-up with an error naming it."""

from __future__ import annotations

import logging

import pytest
from algoedge.config import (
    ApiSettings,
    BeatSettings,
    BridgeSettings,
    ConfigError,
    MigrateSettings,
    ServiceSettings,
    WorkerSettings,
    known_variables,
    load_settings,
)

VALID = {
    "ALGOEDGE_DATABASE_URL": "postgresql://app:s3cret-pw@pgbouncer:6432/algoedge",
    "ALGOEDGE_REDIS_URL": "redis://:pw@redis:6379/0",
    "ALGOEDGE_JWT_SECRET": "j" * 32,
    "ALGOEDGE_INTERNAL_TOKEN": "i" * 16,
    "ALGOEDGE_CREDENTIALS_KEY": "q3Jm3mzJUCcoQ2d5_-q-dJZxZC-ORG-OOe1xPZ8L4w8=",
}


def env(**changes: str | None) -> dict[str, str]:
    merged: dict[str, str | None] = {**VALID, **changes}
    return {k: v for k, v in merged.items() if v is not None}


class TestValidSettings:
    def test_should_read_the_contract_variables(self) -> None:
        settings = load_settings(ApiSettings, env(ALGOEDGE_HTTP_PORT="9090"))
        assert settings.database_url == VALID["ALGOEDGE_DATABASE_URL"]
        assert settings.redis_url == VALID["ALGOEDGE_REDIS_URL"]
        assert settings.jwt_secret.get_secret_value() == "j" * 32
        assert settings.internal_token.get_secret_value() == "i" * 16
        assert settings.http_port == 9090

    def test_should_default_the_http_port_to_8080(self) -> None:
        assert load_settings(ApiSettings, env()).http_port == 8080

    def test_should_default_the_metrics_port_to_9090_and_take_0_for_none(self) -> None:
        assert load_settings(ApiSettings, env()).metrics_port == 9090
        assert load_settings(ApiSettings, env(ALGOEDGE_METRICS_PORT="0")).metrics_port == 0

    def test_should_need_only_the_database_to_migrate(self) -> None:
        settings = load_settings(
            MigrateSettings, {"ALGOEDGE_DATABASE_URL": VALID["ALGOEDGE_DATABASE_URL"]}
        )
        assert settings.db_pool_max == 10

    @pytest.mark.parametrize(
        "url", ["postgres://u:p@h/db", "postgresql://h:5432/db", "postgresql://u@[::1]:6432/x"]
    )
    def test_should_accept_postgres_url_forms(self, url: str) -> None:
        assert load_settings(MigrateSettings, {"ALGOEDGE_DATABASE_URL": url}).database_url == url

    @pytest.mark.parametrize("url", ["rediss://:pw@r:6380/2", "redis://r"])
    def test_should_accept_redis_url_forms(self, url: str) -> None:
        assert load_settings(ServiceSettings, env(ALGOEDGE_REDIS_URL=url)).redis_url == url

    def test_should_read_allowed_origins_as_a_list(self) -> None:
        settings = load_settings(
            ApiSettings,
            env(ALGOEDGE_ALLOWED_ORIGINS=" https://app.example.com, http://[::1]:3000,"),
        )
        assert settings.allowed_origins == ("https://app.example.com", "http://[::1]:3000")
        assert load_settings(ApiSettings, env()).allowed_origins == ()

    def test_should_read_the_replica_only_where_reads_may_trail_the_primary(self) -> None:
        replica = "postgresql://app:s3cret-pw@pgbouncer:6432/algoedge_ro"
        settings = load_settings(
            ApiSettings,
            env(ALGOEDGE_DATABASE_READ_URL=replica, ALGOEDGE_DATABASE_READ_MAX_LAG="2.5"),
        )
        assert (settings.database_read_url, settings.database_read_max_lag) == (replica, 2.5)
        assert load_settings(ApiSettings, env()).database_read_url is None
        assert "database_read_url" in WorkerSettings.model_fields
        for reads_what_it_wrote in (BeatSettings, BridgeSettings, MigrateSettings):
            assert "database_read_url" not in reads_what_it_wrote.model_fields

    def test_should_not_show_secrets_in_repr(self) -> None:
        assert "j" * 32 not in repr(load_settings(ApiSettings, env()))

    def test_should_list_every_contract_variable_as_known(self) -> None:
        assert {
            "ALGOEDGE_DATABASE_URL",
            "ALGOEDGE_REDIS_URL",
            "ALGOEDGE_JWT_SECRET",
            "ALGOEDGE_INTERNAL_TOKEN",
            "ALGOEDGE_HTTP_PORT",
        } <= known_variables()


class TestBadSettings:
    @pytest.mark.parametrize(
        ("variable", "value", "reason"),
        [
            ("ALGOEDGE_DATABASE_URL", None, "is not set"),
            ("ALGOEDGE_DATABASE_URL", "mysql://u:p@h/db", "must start with postgresql://"),
            ("ALGOEDGE_DATABASE_URL", "postgresql://u:p@h:54x2/db", "has an invalid port"),
            ("ALGOEDGE_DATABASE_URL", "postgresql://u:p@h:5432", "names no database"),
            ("ALGOEDGE_DATABASE_URL", "postgresql:///db", "has no host"),
            ("ALGOEDGE_DATABASE_URL", "", "must start with postgresql://"),
            ("ALGOEDGE_REDIS_URL", None, "is not set"),
            ("ALGOEDGE_REDIS_URL", "http://r:6379", "must start with redis://"),
            ("ALGOEDGE_REDIS_URL", "redis://r:6379/zero", "database that is not a number"),
            ("ALGOEDGE_JWT_SECRET", None, "is not set"),
            ("ALGOEDGE_JWT_SECRET", "short", "shorter than 32 characters"),
            ("ALGOEDGE_INTERNAL_TOKEN", "tiny", "shorter than 16 characters"),
            ("ALGOEDGE_HTTP_PORT", "eighty", "is invalid"),
            ("ALGOEDGE_HTTP_PORT", "70000", "is invalid"),
            ("ALGOEDGE_HTTP_PORT", "0", "is invalid"),
            ("ALGOEDGE_METRICS_PORT", "70000", "is invalid"),
            ("ALGOEDGE_METRICS_PORT", "-1", "is invalid"),
            ("ALGOEDGE_METRICS_PORT", "nine", "is invalid"),
            # One port for both would put /metrics and /internal/v1/* on the public port again.
            ("ALGOEDGE_METRICS_PORT", "8080", "must differ from ALGOEDGE_HTTP_PORT"),
            ("ALGOEDGE_DB_POOL_MAX", "0", "is invalid"),
            ("ALGOEDGE_DATABASE_READ_URL", "mysql://u:p@h/db", "must start with postgresql://"),
            ("ALGOEDGE_DATABASE_READ_MAX_LAG", "0.5", "is invalid"),
            ("ALGOEDGE_DATABASE_READ_MAX_LAG", "3601", "is invalid"),
            ("ALGOEDGE_LOG_LEVEL", "LOUD", "is invalid"),
            ("ALGOEDGE_ALLOWED_ORIGINS", "https://app.example.com/", "must be comma-separated"),
            ("ALGOEDGE_ALLOWED_ORIGINS", "*", "must be comma-separated origins"),
            ("ALGOEDGE_ALLOWED_ORIGINS", "https://a.example,HTTPS://B.EXAMPLE", "lower case"),
            ("ALGOEDGE_ALLOWED_ORIGINS", "http://localhost:70000", "must be comma-separated"),
        ],
    )
    def test_should_name_the_variable_the_reason_and_the_form(
        self, variable: str, value: str | None, reason: str
    ) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(ApiSettings, env(**{variable: value}))
        message = str(caught.value)
        assert message.startswith(variable)
        assert reason in message
        assert "(expected " in message
        assert "\n" not in message

    def test_should_never_echo_the_bad_value(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(ApiSettings, env(ALGOEDGE_DATABASE_URL="mysql://u:hunter2@h/db"))
        assert "hunter2" not in str(caught.value)

    def test_should_report_every_bad_variable_at_once(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(ApiSettings, {})
        for name in ("ALGOEDGE_DATABASE_URL", "ALGOEDGE_REDIS_URL", "ALGOEDGE_JWT_SECRET"):
            assert name in str(caught.value)

    def test_should_warn_about_an_unknown_variable_with_a_suggestion(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="algoedge.config"):
            load_settings(ApiSettings, env(ALGOEDGE_HTTP_PROT="9000"))
        assert "ALGOEDGE_HTTP_PROT" in caplog.text
        assert "did you mean ALGOEDGE_HTTP_PORT" in caplog.text
