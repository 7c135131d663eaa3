"""The operator and the app agree: what the operator gives an API pod is what the API accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from algoedge.config import ORIGIN_PATTERN, ApiSettings, load_settings
from algoedge.rates import RateLimit
from algoedge_operator.builders.config import INTERNAL_KEYS, config_data
from algoedge_operator.builders.pgbouncer import client_database_url
from algoedge_operator.builders.redis import redis_url
from algoedge_operator.reconcile import generate_secret_value

from tests.unit.operator.support import DATABASE, tenant

ROOT = Path(__file__).resolve().parents[2]


def pod_environment(**spec: Any) -> dict[str, str]:
    """The API container's environment: ConfigMap, internal Secret, pgBouncer and Redis URLs."""
    aet = tenant(**spec)
    return {
        **config_data(aet),
        **{key: generate_secret_value(key) for key in INTERNAL_KEYS},
        "ALGOEDGE_DATABASE_URL": client_database_url(aet, DATABASE),
        "ALGOEDGE_REDIS_URL": redis_url(aet, generate_secret_value("redis-password")),
    }


def test_should_start_the_api_with_what_the_operator_sets() -> None:
    settings = load_settings(ApiSettings, pod_environment())
    assert settings.http_port == 8080
    assert settings.database_url.startswith("postgresql://acme:p%40ss@acme-pgbouncer.trading.svc:")


def test_should_carry_rate_limits_queues_and_proxies_through() -> None:
    env = pod_environment(
        rateLimits={"perUser": {"requests": 5, "windowSeconds": 60}},
        workers={"queues": ["default", "reports-v2"]},
        trustedProxies=["10.0.0.0/8"],
        allowedOrigins=["https://app.example.com", "http://[::1]:3000"],
    )
    settings = load_settings(ApiSettings, env)
    assert settings.rate_limit_per_user == RateLimit(5, 60)
    assert settings.worker_queues == ("default", "reports-v2")
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8"]
    assert settings.allowed_origins == ("https://app.example.com", "http://[::1]:3000")


def test_should_validate_allowed_origins_with_the_apps_own_expression() -> None:
    """The CRD's CEL rule is what lets an origin reach the app, so it must be the app's rule."""
    crd = yaml.safe_load((ROOT / "crds" / "algoedge.io_algoedgetenants.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    (rule,) = spec["properties"]["allowedOrigins"]["x-kubernetes-validations"]
    assert rule["rule"] == f"self.all(o, o.matches(r'{ORIGIN_PATTERN}'))"


def test_should_only_set_variables_the_app_knows() -> None:
    from algoedge.config import known_variables

    assert set(pod_environment()) <= known_variables()
