"""The operator and the app agree: what the operator gives an app pod is what that process accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from algoedge.config import (
    ORIGIN_PATTERN,
    ApiSettings,
    BeatSettings,
    BridgeSettings,
    ConfigError,
    JobsSettings,
    ReadReplicaSettings,
    ServiceSettings,
    WorkerSettings,
    load_settings,
)
from algoedge.hashing import DEFAULT_MEMORY_LIMIT_MIB, hash_concurrency_for, peak_memory_mib
from algoedge.rates import RateLimit
from algoedge_operator.builders.api import api_deployment
from algoedge_operator.builders.bridge import bridge_stateful_set
from algoedge_operator.builders.common import tmp_volume
from algoedge_operator.builders.config import INTERNAL_KEYS, config_data
from algoedge_operator.builders.pgbouncer import (
    CLIENT_URL_KEY,
    client_database_url,
    pgbouncer_secret_values,
)
from algoedge_operator.builders.redis import redis_url
from algoedge_operator.builders.workers import beat_deployment, worker_deployment
from algoedge_operator.model import Tenant, check_metaapi_token
from algoedge_operator.profile import PROFILES, CapacityProfile, mebibytes
from algoedge_operator.reconcile import generate_secret_value

from tests.contract_cases import TRUSTED_PROXY_CASES
from tests.unit.operator.support import (
    DATABASE,
    METAAPI_TOKEN,
    TARGETS,
    container,
    tenant,
    tenant_secrets,
)

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "algoedge.io_algoedgetenants.yaml"
SMTP_URL = "smtp://mailer:pw@mail.example.com:587?starttls=true"
MAIL = {"from": "AlgoEdge <reports@example.com>", "smtpSecretRef": {"name": "acme-smtp"}}


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


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
    (rule,) = spec_schema()["properties"]["allowedOrigins"]["x-kubernetes-validations"]
    assert rule["rule"] == f"self.all(o, o.matches(r'{ORIGIN_PATTERN}'))"


#: The CRD's rule for ``spec.trustedProxies``: a CIDR that is its own network address (no host
#: bits set), as the app's ``ipaddress.ip_network(strict=True)`` requires.
TRUSTED_PROXIES_RULE = "self.all(c, isCIDR(c) && cidr(c) == cidr(c).masked())"


def test_should_admit_exactly_the_trusted_proxies_the_app_starts_with() -> None:
    """The API server runs the CEL rule on the same cases (tests/e2e/operator/test_validation.py)."""
    (rule,) = spec_schema()["properties"]["trustedProxies"]["x-kubernetes-validations"]
    assert rule["rule"] == TRUSTED_PROXIES_RULE
    for entry, admitted in TRUSTED_PROXY_CASES:
        env = pod_environment(trustedProxies=[entry])
        if admitted:
            settings = load_settings(ApiSettings, env)
            assert [str(n) for n in settings.trusted_proxies] == [entry], entry
        else:
            with pytest.raises(ConfigError, match="ALGOEDGE_TRUSTED_PROXIES"):
                load_settings(ApiSettings, env)


def test_should_only_set_variables_the_app_knows() -> None:
    from algoedge.config import known_variables

    assert set(pod_environment()) <= known_variables()


def container_environment(
    container_spec: Mapping[str, Any], *, config: Mapping[str, str]
) -> dict[str, str]:
    """What the kubelet gives a container: the ConfigMap, then its env with secrets resolved."""
    aet = tenant(mail=MAIL)
    secrets = {
        ("acme-pgbouncer", CLIENT_URL_KEY): client_database_url(aet, DATABASE),
        ("acme-redis", "url"): redis_url(aet, generate_secret_value("redis-password")),
        ("acme-smtp", "url"): SMTP_URL,
        ("acme-metaapi", "token"): METAAPI_TOKEN,
        **{("acme-internal", key): generate_secret_value(key) for key in INTERNAL_KEYS},
    }
    #: The pod's own fields (the downward API), for the bridge's first replica.
    pod_fields = {"metadata.name": "acme-bridge-0"}
    assert container_spec["envFrom"] == [{"configMapRef": {"name": "acme-config"}}]
    environment = dict(config)
    for entry in container_spec["env"]:
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
        elif "fieldRef" in entry["valueFrom"]:
            environment[entry["name"]] = pod_fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            environment[entry["name"]] = secrets[(ref["name"], ref["key"])]
    return environment


def worker_environment(**spec: Any) -> dict[str, str]:
    aet = tenant(**spec)
    worker = container(worker_deployment(aet, tenant_secrets(), TARGETS), "worker")
    return container_environment(worker, config=config_data(aet))


def beat_environment(**spec: Any) -> dict[str, str]:
    aet = tenant(**spec)
    beat = container(beat_deployment(aet, tenant_secrets()), "beat")
    return container_environment(beat, config=config_data(aet))


def bridge_environment(**spec: Any) -> dict[str, str]:
    aet = tenant(**spec)
    bridge = container(bridge_stateful_set(aet, tenant_secrets(), TARGETS), "bridge")
    return container_environment(bridge, config=config_data(aet))


def test_should_only_give_worker_beat_and_bridge_variables_the_app_knows() -> None:
    from algoedge.config import known_variables

    assert set(worker_environment(mail=MAIL)) <= known_variables()
    assert set(beat_environment(mail=MAIL)) <= known_variables()
    assert set(bridge_environment(bridge={"metaapi": {"region": "london"}})) <= known_variables()


def test_should_start_the_worker_with_what_the_operator_sets() -> None:
    deployment = worker_deployment(tenant(mail=MAIL), tenant_secrets(), TARGETS)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    settings = load_settings(
        WorkerSettings, worker_environment(mail=MAIL, workers={"concurrency": 6})
    )
    assert settings.worker_concurrency == 6
    assert settings.worker_prefetch_multiplier == 1
    assert settings.worker_soft_shutdown_timeout == grace - 30
    assert settings.metrics_port == 9090
    assert settings.mail_from == "AlgoEdge <reports@example.com>"
    assert settings.smtp_url is not None
    assert (settings.smtp_url.host, settings.smtp_url.security) == ("mail.example.com", "starttls")


def test_should_start_beat_with_what_the_operator_sets() -> None:
    settings = load_settings(BeatSettings, beat_environment(reports={"dailyAt": "06:45"}))
    assert settings.report_daily_at.strftime("%H:%M") == "06:45"
    assert settings.metrics_port == 9090


def test_should_start_the_bridge_with_what_the_operator_sets() -> None:
    settings = load_settings(
        BridgeSettings,
        bridge_environment(bridge={"maxConcurrentSyncs": 7, "metaapi": {"region": "london"}}),
    )
    assert settings.metaapi_token.get_secret_value() == METAAPI_TOKEN
    assert (settings.metaapi_region, settings.metaapi_domain) == (
        "london",
        "agiliumtrade.agiliumtrade.ai",
    )
    assert settings.metaapi_url is None, "the real MetaAPI unless spec.bridge.metaapi.url says"
    assert settings.bridge_pod_name == "acme-bridge-0"
    assert settings.bridge_max_concurrent_syncs == 7
    assert settings.metrics_port == 9090
    assert settings.database_url.startswith("postgresql://acme:p%40ss@acme-pgbouncer.trading.svc:")


def test_should_probe_the_bridge_on_the_port_it_serves() -> None:
    bridge = container(bridge_stateful_set(tenant(), tenant_secrets(), TARGETS), "bridge")
    (port,) = bridge["ports"]
    settings = load_settings(BridgeSettings, bridge_environment())
    assert port["containerPort"] == settings.metrics_port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert bridge[probe]["httpGet"]["port"] == port["name"]


def test_should_probe_the_port_and_file_the_app_uses() -> None:
    """The probes check the app's default heartbeat file: it must be on the pod's writable /tmp."""
    _, tmp_mount = tmp_volume()
    heartbeat = PurePosixPath(JobsSettings.model_fields["heartbeat_file"].default)
    assert heartbeat.is_relative_to(tmp_mount["mountPath"])
    assert "ALGOEDGE_HEARTBEAT_FILE" not in worker_environment(), "the app's default is the one"


#: Every spec field whose default the app repeats: the CRD's default, rendered by the operator into
#: the variable, must be what the app assumes when the variable is unset.
SHARED_DEFAULTS: list[tuple[str, str, type[ServiceSettings], str]] = [
    ("logLevel", "ALGOEDGE_LOG_LEVEL", ApiSettings, "log_level"),
    ("rateLimits.perUser", "ALGOEDGE_RATE_LIMIT_PER_USER", ApiSettings, "rate_limit_per_user"),
    ("rateLimits.perIP", "ALGOEDGE_RATE_LIMIT_PER_IP", ApiSettings, "rate_limit_per_ip"),
    ("rateLimits.auth", "ALGOEDGE_RATE_LIMIT_AUTH", ApiSettings, "rate_limit_auth"),
    ("limits.accountsPerUser", "ALGOEDGE_ACCOUNTS_PER_USER", ApiSettings, "accounts_per_user"),
    ("workers.queues", "ALGOEDGE_WORKER_QUEUES", ServiceSettings, "worker_queues"),
    ("workers.concurrency", "ALGOEDGE_WORKER_CONCURRENCY", WorkerSettings, "worker_concurrency"),
    ("reports.dailyAt", "ALGOEDGE_REPORT_DAILY_AT", BeatSettings, "report_daily_at"),
    (
        "bridge.maxConcurrentSyncs",
        "ALGOEDGE_BRIDGE_MAX_CONCURRENT_SYNCS",
        BridgeSettings,
        "bridge_max_concurrent_syncs",
    ),
    ("bridge.metaapi.domain", "ALGOEDGE_METAAPI_DOMAIN", BridgeSettings, "metaapi_domain"),
]


def crd_default(path: str) -> Any:
    """The CRD's default at ``path``; for an object, its leaves' defaults."""
    node: dict[str, Any] = spec_schema()
    for part in path.split("."):
        node = node["properties"][part]
    if "default" in node and node.get("type") != "object":
        return node["default"]
    return {name: field["default"] for name, field in node["properties"].items()}


def with_value(path: str, value: Any) -> dict[str, Any]:
    """A spec fragment setting ``path`` to ``value``."""
    fragment: Any = value
    for part in reversed(path.split(".")):
        fragment = {part: fragment}
    return dict(fragment)


def operator_environment(aet: Tenant) -> dict[str, str]:
    """Every literal variable an app pod of ``aet`` gets: the ConfigMap, then the worker's and the
    bridge's env."""
    worker = container(worker_deployment(aet, tenant_secrets(), TARGETS), "worker")
    bridge = container(bridge_stateful_set(aet, tenant_secrets(), TARGETS), "bridge")
    literal = [e for e in worker["env"] + bridge["env"] if "value" in e]
    return {**config_data(aet), **{e["name"]: e["value"] for e in literal}}


@pytest.mark.parametrize(
    ("path", "variable", "settings", "field"), SHARED_DEFAULTS, ids=[d[0] for d in SHARED_DEFAULTS]
)
def test_should_default_shared_settings_as_the_app_does(
    path: str, variable: str, settings: type[ServiceSettings], field: str
) -> None:
    """Explicitly the CRD's value (not the operator model's copy of it), through the operator's
    rendering, read by the app's own parser."""
    rendered = operator_environment(tenant(**with_value(path, crd_default(path))))[variable]
    env = {**pod_environment(), **worker_environment(), **bridge_environment(), variable: rendered}
    parsed = getattr(load_settings(settings, env), field)
    assert parsed == settings.model_fields[field].default, f"{path}: CRD {rendered!r}"


def test_should_compare_every_default_the_operator_renders_from_the_spec() -> None:
    """A spec field the ConfigMap or a container carries by default but SHARED_DEFAULTS forgot
    would escape."""
    fixed_by_the_operator = {
        "ALGOEDGE_HTTP_PORT",
        "ALGOEDGE_METRICS_PORT",
        "ALGOEDGE_WORKER_PREFETCH_MULTIPLIER",
        "ALGOEDGE_WORKER_SOFT_SHUTDOWN_TIMEOUT",
    }
    rendered = set(operator_environment(tenant())) - fixed_by_the_operator
    assert rendered <= {variable for _, variable, _, _ in SHARED_DEFAULTS}


def test_should_import_nothing_of_the_app_that_the_operator_image_lacks() -> None:
    """The operator image installs none of the app's extras: only the stdlib URL rules and the
    password-hashing arithmetic may come."""
    code = (
        "import sys, algoedge_operator; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('algoedge', 'redis', 'aiopg', 'socketio', 'celery', 'cryptography')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "['algoedge', 'algoedge.hashing', 'algoedge.urls']"


def _app_accepts(
    settings: type[ServiceSettings], environment: Mapping[str, str], variable: str, value: str
) -> bool:
    """Whether the process starts with ``variable`` set to ``value`` (a refusal must name it)."""
    try:
        load_settings(settings, {**environment, variable: value})
    except ConfigError as error:
        refusal = str(error)
    else:
        return True
    assert variable in refusal
    return False


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("00:00", True),
        ("23:59", True),
        ("00:15", True),
        ("24:00", False),
        ("7:30", False),
        ("12:60", False),
        ("12:30 ", False),
    ],
)
def test_should_accept_the_daily_report_times_beat_accepts(value: str, valid: bool) -> None:
    # The API server matches OpenAPI patterns anywhere in the string (Go's MatchString).
    pattern = spec_schema()["properties"]["reports"]["properties"]["dailyAt"]["pattern"]
    assert (re.search(pattern, value) is not None) is valid
    assert (
        _app_accepts(BeatSettings, beat_environment(), "ALGOEDGE_REPORT_DAILY_AT", value) is valid
    )


@pytest.mark.parametrize(
    ("value", "crd_accepts"),
    [
        ("AlgoEdge <reports@example.com>", True),
        ("reports@example.com", True),
        ("no-address", False),
        ("a@b.c\r\nBcc: x@y.z", False),
        ("x" * 64 + "@" + "e" * 256 + ".com", False),
    ],
)
def test_should_refuse_in_the_crd_only_senders_the_worker_refuses(
    value: str, crd_accepts: bool
) -> None:
    """The CRD's check is coarse (an @, no line breaks, 320 characters); the worker's is full."""
    field = spec_schema()["properties"]["mail"]["properties"]["from"]
    accepted = (
        field["minLength"] <= len(value) <= field["maxLength"]
        and re.search(field["pattern"], value) is not None
    )
    assert accepted is crd_accepts
    app_accepts = _app_accepts(WorkerSettings, worker_environment(), "ALGOEDGE_MAIL_FROM", value)
    assert app_accepts or not accepted, "the CRD lets through a sender the worker refuses"


def _crd_accepts(field: Mapping[str, Any], value: str) -> bool:
    # The API server matches OpenAPI patterns anywhere in the string (Go's MatchString).
    return len(value) <= field["maxLength"] and re.search(field["pattern"], value) is not None


def metaapi_schema(name: str) -> dict[str, Any]:
    bridge = spec_schema()["properties"]["bridge"]["properties"]
    return dict(bridge["metaapi"]["properties"][name])


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("london", True),
        ("new-york", True),
        ("vint-hill", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("London", False),
        ("new_york", False),
        ("-london", False),
        ("london.eu", False),
        ("", False),
    ],
)
def test_should_accept_the_metaapi_regions_the_bridge_accepts(value: str, valid: bool) -> None:
    assert _crd_accepts(metaapi_schema("region"), value) is valid
    environment = bridge_environment()
    assert _app_accepts(BridgeSettings, environment, "ALGOEDGE_METAAPI_REGION", value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("agiliumtrade.agiliumtrade.ai", True),
        ("metaapi.example.com", True),
        ("x" * 63 + ".ai", True),
        ("localhost", False),
        ("https://metaapi.cloud", False),
        ("metaapi.cloud/", False),
        ("MetaApi.cloud", False),
        ("metaapi..cloud", False),
    ],
)
def test_should_accept_the_metaapi_domains_the_bridge_accepts(value: str, valid: bool) -> None:
    assert _crd_accepts(metaapi_schema("domain"), value) is valid
    environment = bridge_environment()
    assert _app_accepts(BridgeSettings, environment, "ALGOEDGE_METAAPI_DOMAIN", value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("http://metaapi-sim.test.svc.cluster.local:8090", True),
        ("http://metaapi-sim:8090/", True),
        ("https://metaapi.example.com", True),
        ("http://10.244.1.1:65535", True),
        ("http://metaapi-sim:65536", False),
        ("http://metaapi-sim:0", False),
        ("http://metaapi-sim:8090/ws", False),
        ("http://metaapi-sim:8090?x=1", False),
        ("http://user@metaapi-sim", False),
        ("ftp://metaapi-sim", False),
        ("metaapi-sim:8090", False),
        ("", False),
    ],
)
def test_should_accept_only_metaapi_urls_the_bridge_accepts(value: str, valid: bool) -> None:
    """The CRD may refuse more (port 0, upper case, IPv6), never less."""
    crd_accepts = _crd_accepts(metaapi_schema("url"), value)
    environment = bridge_environment()
    app_accepts = _app_accepts(BridgeSettings, environment, "ALGOEDGE_METAAPI_URL", value)
    assert crd_accepts is valid
    assert app_accepts or not crd_accepts


def test_should_aim_the_bridge_at_the_metaapi_url_the_tenant_gives() -> None:
    url = "http://metaapi-sim.test.svc.cluster.local:8090"
    settings = load_settings(BridgeSettings, bridge_environment(bridge={"metaapi": {"url": url}}))
    assert settings.metaapi_url == url


@pytest.mark.parametrize(
    "token",
    [METAAPI_TOKEN, "a.b.c", "a.b", "a..c", "a.b.c.d", "", METAAPI_TOKEN + "\n", "a b.c.d"],
)
def test_should_pass_on_only_metaapi_tokens_the_bridge_accepts(token: str) -> None:
    """The operator reads the token to stop the reconcile on one the bridge would refuse
    (SecretInvalid, not crash-looping pods); it may refuse more (whitespace), never less."""
    try:
        check_metaapi_token(token)
    except ValueError:
        operator_accepts = False
    else:
        operator_accepts = True
    environment = bridge_environment()
    app_accepts = _app_accepts(BridgeSettings, environment, "ALGOEDGE_METAAPI_TOKEN", token)
    assert app_accepts or not operator_accepts
    assert operator_accepts is (token in (METAAPI_TOKEN, "a.b.c"))


def api_environment_of(**spec: Any) -> dict[str, str]:
    """The API container's environment, as the kubelet gives it."""
    aet = tenant(**spec)
    api = container(api_deployment(aet, tenant_secrets()), "api")
    return container_environment(api, config=config_data(aet))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_should_bound_password_hashing_within_the_api_memory_limit(
    profile: CapacityProfile,
) -> None:
    """Each hash holds 64 MiB: the bound the operator sets must keep the API's sized peak
    (algoedge.hashing.peak_memory_mib) within its container's limit, and use the room."""
    users = profile.up_to_users or 10_000
    settings = load_settings(ApiSettings, api_environment_of(expectedUsers=users))
    limit = mebibytes(profile.api_resources.memory_limit)
    assert peak_memory_mib(settings.password_hash_concurrency) <= limit
    assert peak_memory_mib(settings.password_hash_concurrency + 1) > limit


@pytest.mark.parametrize(("memory", "concurrency"), [("512Mi", 4), ("2Gi", 28), ("256Mi", 1)])
def test_should_size_password_hashing_from_an_explicit_memory_limit(
    memory: str, concurrency: int
) -> None:
    """512 Mi leaves (512 - 256) / 64 = 4 hashes; 2 Gi 28; below 320 Mi still one (a pod that
    small cannot log anyone in within its limit: docs/security.md)."""
    env = api_environment_of(api={"resources": {"limits": {"memory": memory}}})
    assert load_settings(ApiSettings, env).password_hash_concurrency == concurrency


def test_should_default_password_hashing_for_the_small_profile() -> None:
    """Without the operator's variable the app assumes the small profile's 512 Mi."""
    (small,) = (p for p in PROFILES if p.name == "small")
    assert mebibytes(small.api_resources.memory_limit) == DEFAULT_MEMORY_LIMIT_MIB
    default = ApiSettings.model_fields["password_hash_concurrency"].default
    assert default == hash_concurrency_for(DEFAULT_MEMORY_LIMIT_MIB) == 4


def replica_environment(settings: type[ServiceSettings], component: str) -> dict[str, str]:
    """An api or worker container of a tenant with read replicas, its secrets resolved."""
    aet = tenant(database={"readReplicas": {"secretRef": {"name": "acme-db-replicas"}}})
    secrets = tenant_secrets(read_replica=DATABASE)
    if component == "api":
        spec = container(api_deployment(aet, secrets), "api")
    else:
        spec = container(worker_deployment(aet, secrets, TARGETS), "worker")
    values = pgbouncer_secret_values(aet, DATABASE, replica=DATABASE)
    resolved = {
        entry["name"]: values[entry["valueFrom"]["secretKeyRef"]["key"]]
        for entry in spec["env"]
        if "valueFrom" in entry
        and entry["valueFrom"].get("secretKeyRef", {}).get("name") == "acme-pgbouncer"
    }
    literal = {e["name"]: e["value"] for e in spec["env"] if "value" in e}
    base = pod_environment() if component == "api" else worker_environment()
    return {**base, **literal, **resolved}


@pytest.mark.parametrize(
    ("settings", "component"), [(ApiSettings, "api"), (WorkerSettings, "worker")]
)
def test_should_read_from_the_replicas_alias_the_operator_sets(
    settings: type[ServiceSettings], component: str
) -> None:
    parsed = load_settings(settings, replica_environment(settings, component))
    assert isinstance(parsed, ReadReplicaSettings)
    assert parsed.database_read_url == (
        "postgresql://acme:p%40ss@acme-pgbouncer.trading.svc:6432/acme_ro"
    )
    assert parsed.database_read_max_lag == crd_default("database.readReplicas.maxLagSeconds")


def test_should_default_and_bound_the_lag_as_the_app_does() -> None:
    field = spec_schema()["properties"]["database"]["properties"]["readReplicas"]["properties"][
        "maxLagSeconds"
    ]
    app = ReadReplicaSettings.model_fields["database_read_max_lag"]
    assert field["default"] == app.default
    for value, valid in ((field["minimum"], True), (field["maximum"], True), (0, False)):
        accepted = _app_accepts(
            ApiSettings, pod_environment(), "ALGOEDGE_DATABASE_READ_MAX_LAG", str(value)
        )
        assert accepted is valid
    assert not _app_accepts(
        ApiSettings, pod_environment(), "ALGOEDGE_DATABASE_READ_MAX_LAG", str(field["maximum"] + 1)
    )


def test_should_bound_accounts_per_user_as_the_app_does() -> None:
    """The CRD's bounds are the app's: what the CRD admits, the API starts with."""
    field = spec_schema()["properties"]["limits"]["properties"]["accountsPerUser"]
    for value, valid in (
        (field["minimum"], True),
        (field["maximum"], True),
        (field["minimum"] - 1, False),
        (field["maximum"] + 1, False),
    ):
        env = pod_environment(limits={"accountsPerUser": value}) if valid else pod_environment()
        accepted = _app_accepts(ApiSettings, env, "ALGOEDGE_ACCOUNTS_PER_USER", str(value))
        assert accepted is valid, value
