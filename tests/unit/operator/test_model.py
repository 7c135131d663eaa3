"""The typed tenant: defaults equal the CRD's, the capacity profile fills only what is unset."""

from __future__ import annotations

import itertools
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from algoedge_operator.model import (
    DAILY_AT_PATTERN,
    METAAPI_DOMAIN_PATTERN,
    METAAPI_REGION_PATTERN,
    METAAPI_URL_PATTERN,
    SpecError,
    SpecFields,
    parse_database_url,
    parse_spec,
    parse_tenant,
)
from algoedge_operator.profile import PROFILES, profile_for
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tests.unit.operator.support import BASE_SPEC, merged, without_metaapi_token

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "algoedge.io_algoedgetenants.yaml"
SAMPLES = sorted((ROOT / "k8s" / "samples").glob("*.yaml"))


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"]["properties"]["spec"])


def leaves(schema: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Dotted path -> schema of every non-object field under ``schema``."""
    found: dict[str, dict[str, Any]] = {}
    for name, child in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if child.get("type") == "object" and "properties" in child:
            found.update(leaves(child, path + "."))
        else:
            found[path] = child
    return found


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (also through ``X | None``), None for a leaf."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def model_leaves(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted CRD path -> the model's default (PydanticUndefined when required) of every leaf."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        nested = _submodel(field.annotation)
        if nested is not None:
            found.update(model_leaves(nested, path + "."))
        else:
            found[path] = field.default
    return found


def jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class TestCrdConsistency:
    def test_should_default_exactly_what_the_model_defaults(self) -> None:
        crd_defaults = {
            path: field["default"]
            for path, field in leaves(spec_schema()).items()
            if "default" in field
        }
        model_defaults = {
            path: jsonable(default)
            for path, default in model_leaves(SpecFields).items()
            if default is not None and default is not PydanticUndefined
        }
        assert crd_defaults == model_defaults

    def test_should_model_every_field_of_the_crd(self) -> None:
        assert set(model_leaves(SpecFields)) == set(leaves(spec_schema()))

    def test_should_require_what_the_crd_requires(self) -> None:
        required = {
            path
            for path, default in model_leaves(SpecFields).items()
            if default is PydanticUndefined
        }
        assert required == {"image", "bridgeImage", "database.secretRef.name"} | {
            "database.readReplicas.secretRef.name",
            "redis.external.secretRef.name",
            "mail.smtpSecretRef.name",
            "bridge.metaapi.tokenSecretRef.name",
        }

    def test_should_check_the_daily_report_time_with_the_crds_pattern(self) -> None:
        assert spec_schema()["properties"]["reports"]["properties"]["dailyAt"]["pattern"] == (
            DAILY_AT_PATTERN
        )

    def test_should_check_the_metaapi_region_domain_and_url_with_the_crds_patterns(self) -> None:
        metaapi = spec_schema()["properties"]["bridge"]["properties"]["metaapi"]["properties"]
        assert metaapi["region"]["pattern"] == METAAPI_REGION_PATTERN
        assert metaapi["domain"]["pattern"] == METAAPI_DOMAIN_PATTERN
        assert metaapi["url"]["pattern"] == METAAPI_URL_PATTERN

    def test_should_parse_every_sample_tenant(self) -> None:
        assert SAMPLES
        for sample in SAMPLES:
            for document in yaml.safe_load_all(sample.read_text()):
                if document and document.get("kind") == "AlgoEdgeTenant":
                    parse_spec(document["spec"])

    def test_should_print_the_columns_the_issue_asks_for(self) -> None:
        crd = yaml.safe_load(CRD.read_text())
        (version,) = crd["spec"]["versions"]
        names = [c["name"] for c in version["additionalPrinterColumns"]]
        assert names == [
            "Ready", "API", "Workers", "Bridge", "Accounts", "Capacity", "Use%", "Cost/mo", "Age",
        ]  # fmt: skip
        assert crd["spec"]["names"]["shortNames"] == ["aet"]
        assert version["subresources"] == {"status": {}}


class TestCapacityProfile:
    @pytest.mark.parametrize(
        ("users", "profile"),
        [
            (1, "small"),
            (100, "small"),
            (101, "medium"),
            (250, "medium"),
            (251, "large"),
            (5000, "large"),
        ],
    )
    def test_should_choose_the_profile_by_expected_users(self, users: int, profile: str) -> None:
        assert profile_for(users).name == profile

    def test_should_grow_with_the_profile(self) -> None:
        for smaller, larger in itertools.pairwise(PROFILES):
            assert smaller.api_max_replicas <= larger.api_max_replicas
            assert smaller.pool_max_client_connections <= larger.pool_max_client_connections
            assert smaller.redis_max_memory_mib <= larger.redis_max_memory_mib

    def test_should_let_explicit_fields_win_over_the_profile(self) -> None:
        spec = parse_spec(
            merged(
                BASE_SPEC,
                {
                    "expectedUsers": 50,
                    "api": {"maxReplicas": 9},
                    "database": {"pool": {"defaultPoolSize": 7}},
                    "redis": {"maxMemory": "2Gi"},
                },
            )
        )
        assert spec.profile.name == "small"
        assert (spec.api.replicas.minimum, spec.api.replicas.maximum) == (1, 9)
        assert spec.database.pool.default_pool_size == 7
        assert spec.database.pool.max_client_connections == 200
        assert spec.redis.max_memory_mib == 2048

    def test_should_lift_the_maximum_with_an_explicit_minimum(self) -> None:
        spec = parse_spec(merged(BASE_SPEC, {"expectedUsers": 50, "api": {"minReplicas": 5}}))
        assert (spec.api.replicas.minimum, spec.api.replicas.maximum) == (5, 5)


class TestParseTenant:
    def test_should_read_the_pause_annotation(self) -> None:
        body = {
            "metadata": {
                "name": "acme",
                "namespace": "ns",
                "uid": "u",
                "generation": 2,
                "annotations": {"algoedge.io/paused": "true"},
            },
            "spec": BASE_SPEC,
        }
        tenant = parse_tenant(body)
        assert tenant.paused is True
        assert tenant.generation == 2

    def test_should_read_mail_and_report_settings(self) -> None:
        spec = parse_spec(
            merged(
                BASE_SPEC,
                {
                    "reports": {"dailyAt": "23:05"},
                    "mail": {"from": "a@b.c", "smtpSecretRef": {"name": "smtp"}},
                },
            )
        )
        assert spec.reports.daily_at == "23:05"
        assert spec.mail.from_address == "a@b.c"
        assert spec.mail.smtp_secret is not None
        assert (spec.mail.smtp_secret.name, spec.mail.smtp_secret.key) == ("smtp", "url")

    def test_should_read_the_read_replicas(self) -> None:
        spec = parse_spec(
            merged(BASE_SPEC, {"database": {"readReplicas": {"secretRef": {"name": "replicas"}}}})
        )
        replicas = spec.database.read_replicas
        assert replicas is not None
        assert (replicas.secret.name, replicas.secret.key) == ("replicas", "url")
        assert replicas.max_lag_seconds == 5
        assert parse_spec(BASE_SPEC).database.read_replicas is None, "absent: the primary only"

    @pytest.mark.parametrize("max_lag", [0, 3601])
    def test_should_refuse_a_lag_bound_the_app_refuses(self, max_lag: int) -> None:
        replicas = {"secretRef": {"name": "replicas"}, "maxLagSeconds": max_lag}
        with pytest.raises(SpecError, match=r"spec\.database\.readReplicas\.maxLagSeconds"):
            parse_spec(merged(BASE_SPEC, {"database": {"readReplicas": replicas}}))

    def test_should_leave_mail_to_the_apps_defaults_when_unset(self) -> None:
        spec = parse_spec(BASE_SPEC)
        assert (spec.mail.from_address, spec.mail.smtp_secret) == (None, None)
        assert spec.reports.daily_at == "00:15"

    def test_should_read_the_metaapi_settings(self) -> None:
        spec = parse_spec(
            merged(
                BASE_SPEC,
                {
                    "bridge": {
                        "maxConcurrentSyncs": 25,
                        "metaapi": {
                            "tokenSecretRef": {"name": "mt", "key": "api"},
                            "region": "london",
                            "domain": "metaapi.example.com",
                        },
                    }
                },
            )
        )
        metaapi = spec.bridge.metaapi
        assert metaapi.token_secret is not None
        assert (metaapi.token_secret.name, metaapi.token_secret.key) == ("mt", "api")
        assert (metaapi.region, metaapi.domain) == ("london", "metaapi.example.com")
        assert spec.bridge.max_concurrent_syncs == 25

    def test_should_default_the_metaapi_settings_as_the_crd_does(self) -> None:
        spec = parse_spec(BASE_SPEC)
        metaapi = spec.bridge.metaapi
        assert metaapi.token_secret is not None
        assert metaapi.token_secret.key == "token"
        assert (metaapi.region, metaapi.domain) == (None, "agiliumtrade.agiliumtrade.ai")
        assert spec.bridge.max_concurrent_syncs == 10
        assert (spec.bridge.replicas.minimum, spec.bridge.replicas.maximum) == (1, 50)

    def test_should_run_no_bridge_without_a_metaapi_token(self) -> None:
        spec = parse_spec(
            merged(without_metaapi_token(), {"bridge": {"minReplicas": 3, "maxReplicas": 9}})
        )
        assert spec.bridge.metaapi.token_secret is None
        assert (spec.bridge.replicas.minimum, spec.bridge.replicas.maximum) == (0, 0)
        # The spec's own bounds are still checked.
        with pytest.raises(SpecError, match=r"^spec\.bridge\.minReplicas must not exceed"):
            parse_spec(merged(without_metaapi_token(), {"bridge": {"minReplicas": 60}}))

    @pytest.mark.parametrize(
        ("metaapi", "field"),
        [
            ({"region": "London"}, "spec.bridge.metaapi.region"),
            ({"region": "new_york"}, "spec.bridge.metaapi.region"),
            ({"domain": "localhost"}, "spec.bridge.metaapi.domain"),
            ({"domain": "https://metaapi.cloud"}, "spec.bridge.metaapi.domain"),
            ({"tokenSecretRef": {"key": "token"}}, "spec.bridge.metaapi.tokenSecretRef.name"),
        ],
    )
    def test_should_refuse_metaapi_settings_the_bridge_would_refuse(
        self, metaapi: dict[str, Any], field: str
    ) -> None:
        with pytest.raises(SpecError) as raised:
            parse_spec(merged(without_metaapi_token(), {"bridge": {"metaapi": metaapi}}))
        assert str(raised.value).startswith(f"{field}: ")

    @pytest.mark.parametrize("daily_at", ["24:00", "7:30", "12:60", ""])
    def test_should_refuse_a_daily_time_that_is_not_hh_mm(self, daily_at: str) -> None:
        with pytest.raises(SpecError, match=r"reports\.dailyAt"):
            parse_spec(merged(BASE_SPEC, {"reports": {"dailyAt": daily_at}}))

    def test_should_refuse_external_redis_without_a_secret(self) -> None:
        with pytest.raises(SpecError, match=r"^spec\.redis\.external\.secretRef is required"):
            parse_spec(merged(BASE_SPEC, {"redis": {"mode": "external"}}))

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"workers": {"queues": []}}, "spec.workers.queues"),
            ({"workers": {"concurrency": "4"}}, "spec.workers.concurrency"),
            ({"rateLimits": {"perIP": {"requests": True}}}, "spec.rateLimits.perIP.requests"),
            ({"redis": {"maxMemory": "1G"}}, "spec.redis.maxMemory"),
            ({"database": {"pool": {"mode": "statement"}}}, "spec.database.pool.mode"),
            ({"beat": {"enabled": "yes"}}, "spec.beat.enabled"),
            ({"mail": {"form": "a@b.c"}}, "spec.mail.form"),
        ],
    )
    def test_should_name_the_field_it_refuses(self, change: dict[str, Any], field: str) -> None:
        with pytest.raises(SpecError) as raised:
            parse_spec(merged(BASE_SPEC, change))
        assert str(raised.value).startswith(f"{field}: ")

    def test_should_refuse_a_minimum_above_the_maximum(self) -> None:
        with pytest.raises(SpecError, match=r"^spec\.workers\.minReplicas must not exceed"):
            parse_spec(merged(BASE_SPEC, {"workers": {"minReplicas": 5, "maxReplicas": 2}}))

    def test_should_fill_what_the_api_server_would_default(self) -> None:
        spec = parse_spec(BASE_SPEC)
        assert spec.workers.queues == ("default", "reports", "emails")
        assert (spec.rate_limits.auth.requests, spec.rate_limits.auth.window_seconds) == (10, 900)
        assert spec.redis.mode == "managed"
        assert spec.database.secret.key == "url"
        assert (spec.trusted_proxies, spec.allowed_origins) == ((), ())


class TestParseDatabaseUrl:
    def test_should_split_and_unquote_the_url(self) -> None:
        target = parse_database_url("postgresql://app%40x:p%2Fw@db:6543/trade?sslmode=verify-full")
        assert (target.user, target.password, target.host, target.port) == (
            "app@x",
            "p/w",
            "db",
            6543,
        )
        assert (target.dbname, target.sslmode) == ("trade", "verify-full")

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("mysql://u:p@h/db", "postgresql://"),
            ("postgresql://u:p@h:99999/db", "port"),
            ("postgresql://u:p@h/", "database"),
            ("postgresql://u:p@/db", "host"),
            ("postgresql://u:p@h/db?sslmode=sometimes", "sslmode"),
            ("postgresql://h/db", "user and a password"),
        ],
    )
    def test_should_say_what_is_wrong(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_database_url(url)

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            # A line break in the name would write its own line into pgbouncer.ini.
            ("postgresql://u:p@h/acme%0Alisten_port%20%3D%201", "names a database pgBouncer"),
            ("postgresql://u:p@h/acme%20x", "names a database pgBouncer"),
            ("postgresql://u:p@h/ac%22me", "names a database pgBouncer"),
            ("postgresql://u:p@h/" + "a" * 64, "names a database pgBouncer"),
            ("postgresql://u%0A:p@h/acme", "control character .* in its user"),
            # A line break in the password would add a user to the userlist.
            ("postgresql://u:p%0A%22admin%22%20%22x%22@h/acme", "control character .* password"),
            ("postgresql://u:p%00@h/acme", "control character .* password"),
        ],
    )
    def test_should_refuse_values_pgbouncer_cannot_hold(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match=message) as refused:
            parse_database_url(url)
        assert "admin" not in str(refused.value)
        assert "listen_port" not in str(refused.value)

    def test_should_accept_names_and_passwords_pgbouncer_takes_with_quoting(self) -> None:
        target = parse_database_url("postgresql://app-user:p%27%22%5C%20w@db/trade-db.v2_x")
        assert (target.dbname, target.user, target.password) == (
            "trade-db.v2_x",
            "app-user",
            "p'\"\\ w",
        )
