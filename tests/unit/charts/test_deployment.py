"""charts/algoedge-operator/templates/deployment.yaml: the operator's Deployment."""

from __future__ import annotations

from typing import Any

import pytest
from algoedge_operator.builders.network import OPERATOR_POD_LABELS
from algoedge_operator.settings import OperatorSettings, kopf_scope_args, load_operator_settings

from tests.unit.charts.support import (
    DEPLOYMENT_FILE,
    OPERATOR_CHART,
    Helm,
    Manifest,
    load_documents,
    only,
)


def render(helm: Helm, **kwargs: Any) -> Manifest:
    return only(helm.render(OPERATOR_CHART, show_only="deployment.yaml", **kwargs), "Deployment")


def container(deployment: Manifest) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(deployment: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deployment)["env"] if "value" in e}


def plain_deployment() -> Manifest:
    return next(d for d in load_documents(DEPLOYMENT_FILE) if d["kind"] == "Deployment")


def test_should_run_one_replica_that_never_overlaps_another(helm: Helm) -> None:
    spec = render(helm)["spec"]
    # kopf runs standalone (no peering): two operators at once would fight over every tenant.
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_should_run_kopf_standalone_over_all_namespaces(helm: Helm) -> None:
    args = container(render(helm))["args"]
    assert args[:4] == ["kopf", "run", "--all-namespaces", "--standalone"]
    assert args[-2:] == ["-m", "algoedge_operator"]
    assert "--log-format=full" in args


def test_should_give_kopf_and_the_operator_the_same_watched_namespaces(helm: Helm) -> None:
    deployment = render(helm, values={"watchNamespaces": ["team-a", "team-b"]})
    args = container(deployment)["args"]
    settings = load_operator_settings(env_of(deployment))
    assert settings.namespaces == ("team-a", "team-b")
    assert args[2:5] == [*kopf_scope_args(settings.namespaces), "--standalone"]
    assert "--all-namespaces" not in args


def test_should_leave_the_namespaces_unset_when_watching_every_namespace(helm: Helm) -> None:
    assert "ALGOEDGE_OPERATOR_NAMESPACES" not in env_of(render(helm))


def test_should_carry_the_labels_the_tenant_api_network_policy_admits(helm: Helm) -> None:
    """The tenant API's metrics port (capacity reads) admits the operator's pods by label."""
    labels = render(helm)["spec"]["template"]["metadata"]["labels"]
    assert labels.items() >= OPERATOR_POD_LABELS.items()


@pytest.mark.parametrize(
    ("verbosity", "flag"), [("quiet", "--quiet"), ("verbose", "--verbose"), ("debug", "--debug")]
)
def test_should_pass_the_verbosity_flag_to_kopf(helm: Helm, verbosity: str, flag: str) -> None:
    args = container(render(helm, set_values={"verbosity": verbosity, "logFormat": "json"}))["args"]
    assert flag in args
    assert "--log-format=json" in args


def test_should_pass_no_verbosity_flag_by_default(helm: Helm) -> None:
    args = container(render(helm))["args"]
    assert not {"--quiet", "--verbose", "--debug"} & set(args)


def test_should_give_the_operator_its_own_defaults(helm: Helm) -> None:
    # The chart's defaults are the operator's: rendering them changes nothing it would choose.
    assert load_operator_settings(env_of(render(helm))) == OperatorSettings()


def test_should_pass_each_setting_as_its_variable_within_the_operators_bounds(helm: Helm) -> None:
    values = {
        "settings": {
            "capacityUrl": "https://capacity.example.com/{namespace}/{name}",
            "scaleInterval": 0.5,
            "resyncInterval": 86400,
            "capacityTimeout": 60,
            "httpHost": "::",
            "httpPort": 9102,
            "redisImage": "redis.example.com/redis:7.4.3",
            "pgbouncerImage": "pgb.example.com/pgbouncer:1.24.1",
            "concurrency": 64,
            "imageAllowlist": ["registry.example.com/algoedge", "ghcr.io/acme/"],
            "pgbouncerExporterImage": "registry.example.com/pgbouncer-exporter:v0.11.0",
            "redisExporterImage": "registry.example.com/redis_exporter:v1.62.0",
            "apiUsersPerPod": 750,
            "priceCpuCoreMonth": 21.5,
            "priceMemoryGibMonth": 3,
            "priceStorageGibMonth": 0.08,
            "priceMetaapiAccountMonth": 0,
            "costCurrency": "EUR",
        }
    }
    deployment = render(helm, values=values)
    settings = load_operator_settings(env_of(deployment))
    assert settings == OperatorSettings(
        capacity_url="https://capacity.example.com/{namespace}/{name}",
        scale_interval=0.5,
        resync_interval=86400,
        capacity_timeout=60,
        http_host="::",
        http_port=9102,
        redis_image="redis.example.com/redis:7.4.3",
        pgbouncer_image="pgb.example.com/pgbouncer:1.24.1",
        concurrency=64,
        image_allowlist=("registry.example.com/algoedge", "ghcr.io/acme/"),
        pgbouncer_exporter_image="registry.example.com/pgbouncer-exporter:v0.11.0",
        redis_exporter_image="registry.example.com/redis_exporter:v1.62.0",
        api_users_per_pod=750,
        price_cpu_core_month=21.5,
        price_memory_gib_month=3,
        price_storage_gib_month=0.08,
        price_metaapi_account_month=0,
        cost_currency="EUR",
    )
    assert container(deployment)["ports"] == [
        {"name": "http", "containerPort": 9102, "protocol": "TCP"}
    ]


def test_should_leave_the_image_allowlist_unset_as_the_plain_manifest_does(helm: Helm) -> None:
    # Unset by default in both (every image allowed); the API server would drop an empty value.
    plain = {
        e["name"]: e["value"]
        for e in plain_deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "ALGOEDGE_OPERATOR_IMAGE_ALLOWLIST" not in plain
    assert "ALGOEDGE_OPERATOR_IMAGE_ALLOWLIST" not in env_of(render(helm))
    assert load_operator_settings(plain).image_allowlist == ()


def test_should_append_extra_env_after_the_settings(helm: Helm) -> None:
    extra = [
        {"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    env = container(render(helm, values={"extraEnv": extra}))["env"]
    assert env[-2:] == extra


def test_should_keep_the_security_settings_of_the_plain_manifest(helm: Helm) -> None:
    plain = plain_deployment()["spec"]["template"]["spec"]
    rendered = render(helm)["spec"]["template"]["spec"]
    assert rendered["securityContext"] == plain["securityContext"]
    assert rendered["volumes"] == plain["volumes"]
    for key in ("securityContext", "resources", "livenessProbe", "readinessProbe", "volumeMounts"):
        assert container(render(helm))[key] == plain["containers"][0][key], key


def test_should_run_the_image_of_the_app_version_unless_told_otherwise(helm: Helm) -> None:
    assert container(render(helm))["image"] == "registry.example.com/algoedge-operator:0.1.0"
    tagged = render(helm, set_values={"image.repository": "r.example/op", "image.tag": "1.2.3"})
    assert container(tagged)["image"] == "r.example/op:1.2.3"
    digest = "sha256:" + "a" * 64
    assert container(render(helm, set_values={"image.digest": digest}))["image"] == (
        f"registry.example.com/algoedge-operator@{digest}"
    )


def test_should_keep_the_charts_labels_over_pod_labels(helm: Helm) -> None:
    deployment = render(
        helm, values={"podLabels": {"team": "platform", "app.kubernetes.io/name": "other"}}
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "platform"
    assert labels["app.kubernetes.io/name"] == "algoedge-operator"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()


def test_should_schedule_as_told(helm: Helm) -> None:
    values = {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "imagePullSecrets": [{"name": "regcred"}],
        "podAnnotations": {"example.com/scrape": "true"},
    }
    deployment = render(helm, values=values)
    pod = deployment["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == values["nodeSelector"]
    assert pod["spec"]["tolerations"] == values["tolerations"]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["metadata"]["annotations"] == {"example.com/scrape": "true"}
