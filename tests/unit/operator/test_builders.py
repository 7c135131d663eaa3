"""Each builder turns a tenant into the manifest a platform engineer expects (no cluster needed)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from algoedge_operator.builders import (
    CHILDREN,
    BuildInputs,
    DatabaseTarget,
    TenantSecrets,
    desired_children,
    key_of,
    prunable_children,
    watched_kinds,
)
from algoedge_operator.builders.api import (
    api_autoscaler,
    api_deployment,
    api_disruption_budget,
    api_service,
)
from algoedge_operator.builders.bridge import (
    BRIDGE_GRACE_SECONDS,
    bridge_disruption_budget,
    bridge_service,
    bridge_stateful_set,
)
from algoedge_operator.builders.common import CHECKSUM_ANNOTATION, Manifest
from algoedge_operator.builders.config import config_map, internal_secret
from algoedge_operator.builders.network import (
    OPERATOR_POD_LABELS,
    api_network_policy,
    bridge_network_policy,
    ingress_only_from_tenant,
)
from algoedge_operator.builders.pgbouncer import (
    pgbouncer_config_map,
    pgbouncer_deployment,
    pgbouncer_secret,
)
from algoedge_operator.builders.redis import redis_secret, redis_stateful_set
from algoedge_operator.builders.workers import (
    WORKER_GRACE_SECONDS,
    beat_deployment,
    worker_deployment,
)
from algoedge_operator.model import Tenant
from algoedge_operator.settings import OperatorSettings

from tests.unit.operator.support import (
    DATABASE,
    IMAGES,
    TARGETS,
    container,
    env_names,
    tenant,
    tenant_secrets,
    without_metaapi_token,
)

APP_CONTRACT = {"ALGOEDGE_DATABASE_URL", "ALGOEDGE_REDIS_URL"}
MAIL = {"from": "AlgoEdge <reports@example.com>", "smtpSecretRef": {"name": "acme-smtp"}}
#: What `algoedge worker` and `algoedge beat` are probed with (docs/operator.md, "Probes").
HEARTBEAT_PROBES = {
    "livenessProbe": {
        "exec": {"command": ["algoedge", "probe", "--max-age", "120"]},
        "initialDelaySeconds": 30,
        "periodSeconds": 30,
        "failureThreshold": 3,
        "timeoutSeconds": 10,
    },
    "readinessProbe": {
        "exec": {"command": ["algoedge", "probe", "--max-age", "60"]},
        "periodSeconds": 15,
        "timeoutSeconds": 10,
    },
}
METRICS_PORTS = [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]


def decoded(secret: Manifest) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def pod_templates(children: list[Manifest]) -> list[dict[str, Any]]:
    return [c["spec"]["template"] for c in children if c["kind"] in ("Deployment", "StatefulSet")]


def literal_env(container_spec: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container_spec["env"] if "value" in e}


def pod_checksum(manifest: Manifest) -> str:
    return str(manifest["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION])


REPO = Path(__file__).resolve().parents[3]


class TestDesiredChildren:
    def test_should_name_label_and_own_every_child(self) -> None:
        t = tenant()
        children = desired_children(t, secrets=tenant_secrets(), targets=TARGETS, images=IMAGES)
        for child in children:
            meta = child["metadata"]
            assert meta["name"].startswith("acme-")
            assert meta["namespace"] == "trading"
            assert meta["labels"]["app.kubernetes.io/name"] == "algoedge"
            assert meta["labels"]["app.kubernetes.io/instance"] == "acme"
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "algoedge-operator"
            assert meta["labels"]["app.kubernetes.io/component"]
            assert meta["labels"]["app.kubernetes.io/version"]
            assert meta["ownerReferences"] == [
                {
                    "apiVersion": "algoedge.io/v1alpha1",
                    "kind": "AlgoEdgeTenant",
                    "name": "acme",
                    "uid": "0000-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]

    def test_should_harden_every_pod(self) -> None:
        children = desired_children(
            tenant(), secrets=tenant_secrets(), targets=TARGETS, images=IMAGES
        )
        for template in pod_templates(children):
            spec = template["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["automountServiceAccountToken"] is False
            assert CHECKSUM_ANNOTATION in template["metadata"]["annotations"]
            for item in spec["containers"] + spec.get("initContainers", []):
                security = item["securityContext"]
                assert security["readOnlyRootFilesystem"] is True
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"] == {"drop": ["ALL"]}
                assert item["resources"]["requests"]
                assert item["resources"]["limits"]

    def test_should_leave_out_beat_and_redis_when_not_wanted(self) -> None:
        t = tenant(
            beat={"enabled": False},
            redis={"mode": "external", "external": {"secretRef": {"name": "r"}}},
        )
        names = {
            key_of(c).name
            for c in desired_children(
                t, secrets=tenant_secrets(redis_password=None), targets=TARGETS, images=IMAGES
            )
        }
        assert "acme-beat" not in names
        assert "acme-redis" not in names
        assert {c.key(t).name for c in prunable_children(t) if not c.optional_api} == {
            "acme-beat",
            "acme-redis",
        }

    def test_should_be_deterministic(self) -> None:
        def build() -> list[Manifest]:
            return desired_children(
                tenant(), secrets=tenant_secrets(), targets=TARGETS, images=IMAGES
            )

        assert build() == build()


class TestChildrenTable:
    """CHILDREN is the one list of children: each entry builds what it declares."""

    def test_should_build_the_kind_and_name_each_entry_declares(self) -> None:
        t = tenant()
        inputs = BuildInputs(secrets=tenant_secrets(), targets=TARGETS, images=IMAGES)
        for child in CHILDREN:
            assert key_of(child.build(t, inputs)) == child.key(t)

    def test_should_declare_each_child_once(self) -> None:
        keys = [child.key(tenant()) for child in CHILDREN]
        assert len(keys) == len(set(keys))

    def test_should_want_every_child_of_a_full_tenant_and_prune_none(self) -> None:
        t = tenant(monitoring={"enabled": True})
        built = desired_children(
            t,
            secrets=tenant_secrets(pgbouncer_stats_password="stats-password"),
            targets=TARGETS,
            images=IMAGES,
        )
        assert [key_of(m) for m in built] == [child.key(t) for child in CHILDREN]
        assert prunable_children(t) == []

    def test_should_report_the_six_workloads_and_scale_two(self) -> None:
        workloads = {c.component: c.kind for c in CHILDREN if c.workload}
        assert workloads == {
            "api": "Deployment",
            "worker": "Deployment",
            "beat": "Deployment",
            "pgbouncer": "Deployment",
            "redis": "StatefulSet",
            "bridge": "StatefulSet",
        }
        assert {c.component: c.scaled_by for c in CHILDREN if c.scaled_by} == {
            "worker": "workers",
            "bridge": "bridge",
        }

    def test_should_keep_the_redis_volume_when_recreating_its_stateful_set(self) -> None:
        keeping = [(c.kind, c.key(tenant()).name) for c in CHILDREN if c.keeps_volumes]
        assert keeping == [("StatefulSet", "acme-redis")]

    def test_should_watch_each_kind_once(self) -> None:
        assert watched_kinds() == (
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Service"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("policy/v1", "PodDisruptionBudget"),
            ("monitoring.coreos.com/v1", "PodMonitor"),
            ("monitoring.coreos.com/v1", "PrometheusRule"),
        )


class TestConfigMap:
    def test_should_render_rate_limits_in_requests_per_seconds_form(self) -> None:
        data = config_map(tenant(rateLimits={"perUser": {"requests": 5, "windowSeconds": 60}}))[
            "data"
        ]
        assert data["ALGOEDGE_RATE_LIMIT_PER_USER"] == "5/60"
        assert data["ALGOEDGE_RATE_LIMIT_PER_IP"] == "300/900"
        assert data["ALGOEDGE_RATE_LIMIT_AUTH"] == "10/900"
        assert data["ALGOEDGE_HTTP_PORT"] == "8080"

    def test_should_share_the_worker_queues_with_every_process(self) -> None:
        data = config_map(tenant(workers={"queues": ["default", "reports"]}))["data"]
        assert data["ALGOEDGE_WORKER_QUEUES"] == "default,reports"

    def test_should_consume_the_report_and_email_queues_by_default(self) -> None:
        assert config_map(tenant())["data"]["ALGOEDGE_WORKER_QUEUES"] == "default,reports,emails"

    def test_should_schedule_the_daily_reports_at_the_time_asked_for(self) -> None:
        assert config_map(tenant())["data"]["ALGOEDGE_REPORT_DAILY_AT"] == "00:15"
        data = config_map(tenant(reports={"dailyAt": "06:30"}))["data"]
        assert data["ALGOEDGE_REPORT_DAILY_AT"] == "06:30"

    def test_should_set_the_mail_sender_only_when_given(self) -> None:
        assert "ALGOEDGE_MAIL_FROM" not in config_map(tenant())["data"]
        data = config_map(tenant(mail=MAIL))["data"]
        assert data["ALGOEDGE_MAIL_FROM"] == "AlgoEdge <reports@example.com>"
        assert not any("SMTP" in key for key in data), "the SMTP URL is a secret"

    def test_should_cap_each_users_linked_accounts_as_the_spec_says(self) -> None:
        assert config_map(tenant())["data"]["ALGOEDGE_ACCOUNTS_PER_USER"] == "10"
        data = config_map(tenant(limits={"accountsPerUser": 3}))["data"]
        assert data["ALGOEDGE_ACCOUNTS_PER_USER"] == "3"

    def test_should_join_trusted_proxies_only_when_set(self) -> None:
        assert "ALGOEDGE_TRUSTED_PROXIES" not in config_map(tenant())["data"]
        data = config_map(tenant(trustedProxies=["10.0.0.0/8", "fd00::/8"]))["data"]
        assert data["ALGOEDGE_TRUSTED_PROXIES"] == "10.0.0.0/8,fd00::/8"

    def test_should_join_allowed_origins_only_when_set(self) -> None:
        assert "ALGOEDGE_ALLOWED_ORIGINS" not in config_map(tenant())["data"]
        origins = ["https://app.example.com", "http://localhost:3000"]
        data = config_map(tenant(allowedOrigins=origins))["data"]
        assert data["ALGOEDGE_ALLOWED_ORIGINS"] == "https://app.example.com,http://localhost:3000"


class TestInternalSecret:
    def test_should_hold_the_three_generated_values_it_is_given(self) -> None:
        values = decoded(internal_secret(tenant(), tenant_secrets()))
        assert set(values) == {
            "ALGOEDGE_INTERNAL_TOKEN",
            "ALGOEDGE_JWT_SECRET",
            "ALGOEDGE_CREDENTIALS_KEY",
        }
        assert values["ALGOEDGE_INTERNAL_TOKEN"] == "internal-token-0123456789"

    def test_should_refuse_to_build_without_every_value(self) -> None:
        with pytest.raises(ValueError, match="ALGOEDGE_JWT_SECRET"):
            internal_secret(tenant(), tenant_secrets(internal={"ALGOEDGE_INTERNAL_TOKEN": "x"}))


class TestApiDeployment:
    def test_should_leave_replicas_to_the_autoscaler(self) -> None:
        assert "replicas" not in api_deployment(tenant(), tenant_secrets())["spec"]

    def test_should_migrate_before_the_api_serves(self) -> None:
        spec = api_deployment(tenant(), tenant_secrets())["spec"]["template"]["spec"]
        assert [c["args"] for c in spec["initContainers"]] == [["migrate"]]
        assert container(api_deployment(tenant(), tenant_secrets()), "api")["args"] == ["api"]

    def test_should_probe_healthz_for_liveness_and_readyz_for_readiness(self) -> None:
        api = container(api_deployment(tenant(), tenant_secrets()), "api")
        assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert api["ports"][0] == {"name": "http", "containerPort": 8080, "protocol": "TCP"}

    def test_should_serve_metrics_and_internal_routes_on_the_shared_metrics_port(self) -> None:
        """The same variable, number and port name as the worker, beat and bridge."""
        api = container(api_deployment(tenant(), tenant_secrets()), "api")
        assert api["ports"][1] == {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
        assert {"name": "ALGOEDGE_METRICS_PORT", "value": "9090"} in api["env"]

    def test_should_keep_serving_while_its_endpoint_is_removed(self) -> None:
        """The kubelet's own sleep (the image needs no `sleep` binary) before SIGTERM, inside a
        grace period that still leaves the app its 20 s drain and 2 s outbox."""
        template = api_deployment(tenant(), tenant_secrets())["spec"]["template"]
        api = container(api_deployment(tenant(), tenant_secrets()), "api")
        assert api["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
        assert template["spec"]["terminationGracePeriodSeconds"] > 5 + 20 + 2
        migrate = template["spec"]["initContainers"][0]
        assert "lifecycle" not in migrate, "init containers take no lifecycle hooks"

    def test_should_roll_a_change_out_by_surge_never_below_its_replicas(self) -> None:
        """A config or image change adds a Ready pod before an old one goes (walked on the real
        node: tests/e2e/realnode/test_rollout.py); a spec change reaches the pods through the
        config checksum of the template."""
        deployment = api_deployment(tenant(), tenant_secrets())
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
        }
        raised = tenant(rateLimits={"perUser": {"requests": 250, "windowSeconds": 900}})
        changed = api_deployment(raised, tenant_secrets())
        assert changed["spec"]["template"] != deployment["spec"]["template"]

    def test_should_give_the_api_every_contract_variable(self) -> None:
        api = container(api_deployment(tenant(), tenant_secrets()), "api")
        assert env_names(api) >= APP_CONTRACT | {
            "ALGOEDGE_INTERNAL_TOKEN",
            "ALGOEDGE_JWT_SECRET",
            "ALGOEDGE_CREDENTIALS_KEY",
        }
        assert api["envFrom"] == [{"configMapRef": {"name": "acme-config"}}]

    def test_should_size_from_the_profile_unless_set(self) -> None:
        sized = container(api_deployment(tenant(expectedUsers=80), tenant_secrets()), "api")
        assert sized["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
        explicit = tenant(api={"resources": {"requests": {"cpu": "750m"}}})
        chosen = container(api_deployment(explicit, tenant_secrets()), "api")
        assert chosen["resources"]["requests"] == {"cpu": "750m", "memory": "512Mi"}

    def test_should_change_the_checksum_when_config_changes(self) -> None:
        def checksum(**spec: Any) -> str:
            template = api_deployment(tenant(**spec), tenant_secrets())["spec"]["template"]
            return str(template["metadata"]["annotations"][CHECKSUM_ANNOTATION])

        assert checksum() == checksum()
        assert checksum() != checksum(rateLimits={"perIP": {"requests": 1}})


class TestApiService:
    def test_should_expose_port_8080_to_the_api_pods(self) -> None:
        spec = api_service(tenant())["spec"]
        assert spec["ports"][0]["port"] == 8080
        assert spec["selector"]["app.kubernetes.io/component"] == "api"

    def test_should_expose_the_metrics_port_by_name_for_the_capacity_reads(self) -> None:
        ports = api_service(tenant())["spec"]["ports"]
        assert ports[1] == {
            "name": "metrics",
            "port": 9090,
            "targetPort": "metrics",
            "protocol": "TCP",
        }
        # The operator's default capacity URL goes to that port.
        assert ":9090/internal/v1/capacity" in OperatorSettings().capacity_url


class TestApiNetworkPolicy:
    def test_should_keep_the_public_port_open_to_any_source(self) -> None:
        policy = api_network_policy(tenant())
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["ingress"][0] == {"ports": [{"protocol": "TCP", "port": 8080}]}

    def test_should_admit_only_the_operator_and_monitoring_to_the_metrics_port(self) -> None:
        rule = api_network_policy(tenant())["spec"]["ingress"][1]
        assert rule["ports"] == [{"protocol": "TCP", "port": 9090}]
        assert rule["from"] == [
            {
                "namespaceSelector": {},
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/component": "operator",
                        "app.kubernetes.io/part-of": "algoedge",
                    }
                },
            },
            {"namespaceSelector": {"matchLabels": {"algoedge.io/monitoring": "true"}}},
        ]

    def test_should_select_the_operators_pods_by_the_labels_its_manifests_give_them(
        self,
    ) -> None:
        """The operator's Deployment (k8s/operator) carries the labels the policy admits."""
        documents = yaml.safe_load_all((REPO / "k8s/operator/deployment.yaml").read_text())
        deployment = next(d for d in documents if d and d["kind"] == "Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels.items() >= OPERATOR_POD_LABELS.items()


class TestApiAutoscaler:
    def test_should_scale_the_api_between_the_profile_bounds(self) -> None:
        spec = api_autoscaler(tenant(expectedUsers=200))["spec"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 5)
        assert spec["scaleTargetRef"]["name"] == "acme-api"
        assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 70

    def test_should_let_explicit_bounds_win(self) -> None:
        spec = api_autoscaler(tenant(api={"minReplicas": 4, "maxReplicas": 6}))["spec"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == (4, 6)


class TestApiDisruptionBudget:
    def test_should_never_block_a_drain_of_a_single_replica(self) -> None:
        spec = api_disruption_budget(tenant())["spec"]
        assert spec["maxUnavailable"] == 1
        assert "minAvailable" not in spec
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


class TestWorkerDeployment:
    def test_should_run_the_replicas_the_scaler_chose(self) -> None:
        assert worker_deployment(tenant(), tenant_secrets(), TARGETS)["spec"]["replicas"] == 3

    def test_should_disable_prefetch(self) -> None:
        worker = container(
            worker_deployment(
                tenant(workers={"queues": ["default", "reports"]}), tenant_secrets(), TARGETS
            ),
            "worker",
        )
        env = {e["name"]: e.get("value") for e in worker["env"]}
        assert env["ALGOEDGE_WORKER_PREFETCH_MULTIPLIER"] == "1"
        assert "ALGOEDGE_JWT_SECRET" not in env

    def test_should_run_as_many_tasks_at_once_as_the_spec_says(self) -> None:
        deployment = worker_deployment(
            tenant(workers={"concurrency": 8}), tenant_secrets(), TARGETS
        )
        assert literal_env(container(deployment, "worker"))["ALGOEDGE_WORKER_CONCURRENCY"] == "8"

    def test_should_probe_the_heartbeat_file_without_a_shell_or_the_broker(self) -> None:
        worker = container(worker_deployment(tenant(), tenant_secrets(), TARGETS), "worker")
        assert {k: worker[k] for k in HEARTBEAT_PROBES} == HEARTBEAT_PROBES
        assert "startupProbe" not in worker

    def test_should_serve_metrics_on_the_metrics_port(self) -> None:
        worker = container(worker_deployment(tenant(), tenant_secrets(), TARGETS), "worker")
        assert worker["ports"] == METRICS_PORTS
        assert literal_env(worker)["ALGOEDGE_METRICS_PORT"] == "9090"

    def test_should_end_the_soft_shutdown_30_seconds_before_the_grace_period(self) -> None:
        deployment = worker_deployment(tenant(), tenant_secrets(), TARGETS)
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        soft = literal_env(container(deployment, "worker"))["ALGOEDGE_WORKER_SOFT_SHUTDOWN_TIMEOUT"]
        assert grace == WORKER_GRACE_SECONDS == 120
        assert int(soft) == grace - 30 == 90

    def test_should_read_the_smtp_url_from_the_referenced_secret(self) -> None:
        t = tenant(mail={"smtpSecretRef": {"name": "acme-smtp", "key": "smtp"}})
        worker = container(worker_deployment(t, tenant_secrets(), TARGETS), "worker")
        smtp = next(e for e in worker["env"] if e["name"] == "ALGOEDGE_SMTP_URL")
        # Not optional: the reconciler deploys nothing until the Secret exists (SecretMissing).
        assert smtp["valueFrom"] == {"secretKeyRef": {"name": "acme-smtp", "key": "smtp"}}
        default_key = container(
            worker_deployment(tenant(mail=MAIL), tenant_secrets(), TARGETS), "worker"
        )
        assert {"name": "acme-smtp", "key": "url"} in [
            e["valueFrom"]["secretKeyRef"] for e in default_key["env"] if "valueFrom" in e
        ]

    def test_should_give_the_smtp_url_to_the_worker_alone(self) -> None:
        children = desired_children(
            tenant(mail=MAIL), secrets=tenant_secrets(), targets=TARGETS, images=IMAGES
        )
        readers = {
            item["name"]
            for template in pod_templates(children)
            for item in template["spec"]["containers"] + template["spec"].get("initContainers", [])
            if "ALGOEDGE_SMTP_URL" in env_names(item)
        }
        assert readers == {"worker"}

    def test_should_send_no_smtp_url_without_a_secret(self) -> None:
        worker = container(
            worker_deployment(tenant(mail={"from": "a@b.c"}), tenant_secrets(), TARGETS), "worker"
        )
        assert "ALGOEDGE_SMTP_URL" not in env_names(worker)

    def test_should_roll_only_the_workers_when_the_smtp_url_changes(self) -> None:
        t = tenant(mail=MAIL)
        before, after = tenant_secrets(smtp_url_digest="a"), tenant_secrets(smtp_url_digest="b")
        assert pod_checksum(worker_deployment(t, before, TARGETS)) != pod_checksum(
            worker_deployment(t, after, TARGETS)
        )
        assert pod_checksum(api_deployment(t, before)) == pod_checksum(api_deployment(t, after))
        assert pod_checksum(beat_deployment(t, before)) == pod_checksum(beat_deployment(t, after))

    def test_should_roll_every_app_pod_when_the_external_redis_url_changes(self) -> None:
        t = tenant(redis={"mode": "external", "external": {"secretRef": {"name": "ext"}}})
        before = tenant_secrets(redis_password=None, external_redis_digest="a")
        after = tenant_secrets(redis_password=None, external_redis_digest="b")
        builds: list[Callable[[TenantSecrets], Manifest]] = [
            lambda s: api_deployment(t, s),
            lambda s: worker_deployment(t, s, TARGETS),
            lambda s: beat_deployment(t, s),
            lambda s: bridge_stateful_set(t, s, TARGETS),
        ]
        for build in builds:
            assert pod_checksum(build(before)) != pod_checksum(build(after))

    def test_should_share_the_apps_checksum_without_an_smtp_secret(self) -> None:
        assert pod_checksum(worker_deployment(tenant(), tenant_secrets(), TARGETS)) == (
            pod_checksum(api_deployment(tenant(), tenant_secrets()))
        )


class TestBeatDeployment:
    def test_should_run_exactly_one_beat_recreated_not_rolled(self) -> None:
        spec = beat_deployment(tenant(), tenant_secrets())["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}

    def test_should_probe_the_heartbeat_file_like_the_workers(self) -> None:
        beat = container(beat_deployment(tenant(), tenant_secrets()), "beat")
        assert {k: beat[k] for k in HEARTBEAT_PROBES} == HEARTBEAT_PROBES

    def test_should_serve_metrics_on_the_metrics_port(self) -> None:
        beat = container(beat_deployment(tenant(), tenant_secrets()), "beat")
        assert beat["ports"] == METRICS_PORTS
        assert literal_env(beat)["ALGOEDGE_METRICS_PORT"] == "9090"
        assert beat["args"] == ["beat"]

    def test_should_never_see_the_smtp_url_or_worker_settings(self) -> None:
        beat = container(beat_deployment(tenant(mail=MAIL), tenant_secrets()), "beat")
        assert not {
            n for n in env_names(beat) if n.startswith(("ALGOEDGE_WORKER_", "ALGOEDGE_SMTP"))
        }


class TestRedis:
    def test_should_never_evict_and_keep_an_append_only_file(self) -> None:
        children = desired_children(
            tenant(), secrets=tenant_secrets(), targets=TARGETS, images=IMAGES
        )
        config = next(
            c
            for c in children
            if c["kind"] == "ConfigMap" and c["metadata"]["name"] == "acme-redis"
        )
        text = config["data"]["redis.conf"]
        assert "maxmemory-policy noeviction" in text
        assert "appendonly yes" in text
        assert "maxmemory 512mb" in text

    def test_should_keep_the_password_in_a_secret_and_the_url_for_the_app(self) -> None:
        values = decoded(redis_secret(tenant(), tenant_secrets()))
        assert values["password"] == "redis-password"
        assert values["url"] == "redis://:redis-password@acme-redis.trading.svc:6379/0"
        assert values["auth.conf"] == 'requirepass "redis-password"\n'

    def test_should_claim_the_requested_storage_and_drop_it_with_the_set(self) -> None:
        spec = redis_stateful_set(tenant(redis={"storage": "5Gi"}), tenant_secrets(), IMAGES)[
            "spec"
        ]
        claim = spec["volumeClaimTemplates"][0]["spec"]
        assert claim["resources"]["requests"]["storage"] == "5Gi"
        assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
        assert spec["replicas"] == 1

    def test_should_size_the_container_above_maxmemory(self) -> None:
        sts = redis_stateful_set(tenant(redis={"maxMemory": "1Gi"}), tenant_secrets(), IMAGES)
        assert container(sts, "redis")["resources"]["limits"]["memory"] == "1088Mi"


class TestPgBouncer:
    def test_should_pool_transactions_with_profile_sizes(self) -> None:
        ini = pgbouncer_config_map(tenant(expectedUsers=200), DATABASE)["data"]["pgbouncer.ini"]
        assert "pool_mode = transaction" in ini
        assert "default_pool_size = 20" in ini
        assert "max_client_conn = 500" in ini
        assert "acme = host='db.example.com' port=5432 dbname='acme'" in ini
        assert "server_tls_sslmode = require" in ini

    def test_should_give_the_app_a_url_to_pgbouncer_with_the_same_credentials(self) -> None:
        values = decoded(pgbouncer_secret(tenant(), DATABASE))
        assert values["database-url"] == (
            "postgresql://acme:p%40ss@acme-pgbouncer.trading.svc:6432/acme"
        )
        assert values["userlist.txt"] == '"acme" "p@ss"\n'

    def test_should_run_two_replicas_with_tcp_probes(self) -> None:
        deployment = pgbouncer_deployment(tenant(), DATABASE, IMAGES)
        assert deployment["spec"]["replicas"] == 2
        assert container(deployment, "pgbouncer")["readinessProbe"]["tcpSocket"] == {
            "port": "postgres"
        }


def bridge_container(**spec: Any) -> dict[str, Any]:
    return container(bridge_stateful_set(tenant(**spec), tenant_secrets(), TARGETS), "bridge")


class TestBridgeStatefulSet:
    def test_should_run_the_bridge_image_with_scaled_replicas(self) -> None:
        sts = bridge_stateful_set(tenant(), tenant_secrets(), TARGETS)
        assert sts["spec"]["replicas"] == 2
        assert container(sts, "bridge")["image"] == "registry.example.com/algoedge-bridge:1.0.0"
        assert container(sts, "bridge")["args"] == ["bridge"]
        assert sts["spec"]["serviceName"] == "acme-bridge"
        assert sts["spec"]["podManagementPolicy"] == "Parallel"

    def test_should_read_the_metaapi_token_from_the_referenced_secret(self) -> None:
        bridge = bridge_container(
            bridge={"metaapi": {"tokenSecretRef": {"name": "mt", "key": "api-token"}}}
        )
        token = next(e for e in bridge["env"] if e["name"] == "ALGOEDGE_METAAPI_TOKEN")
        # Not optional: the reconciler deploys nothing until the Secret exists (SecretMissing).
        assert token["valueFrom"] == {"secretKeyRef": {"name": "mt", "key": "api-token"}}
        default_key = next(
            e for e in bridge_container()["env"] if e["name"] == "ALGOEDGE_METAAPI_TOKEN"
        )
        assert default_key["valueFrom"] == {
            "secretKeyRef": {"name": "acme-metaapi", "key": "token"}
        }

    def test_should_give_the_metaapi_token_to_the_bridge_alone(self) -> None:
        children = desired_children(
            tenant(), secrets=tenant_secrets(), targets=TARGETS, images=IMAGES
        )
        readers = {
            item["name"]
            for template in pod_templates(children)
            for item in template["spec"]["containers"] + template["spec"].get("initContainers", [])
            if "ALGOEDGE_METAAPI_TOKEN" in env_names(item)
        }
        assert readers == {"bridge"}

    def test_should_pass_the_metaapi_and_sync_settings_it_is_given(self) -> None:
        env = literal_env(
            bridge_container(bridge={"maxConcurrentSyncs": 25, "metaapi": {"region": "london"}})
        )
        assert env["ALGOEDGE_BRIDGE_MAX_CONCURRENT_SYNCS"] == "25"
        assert env["ALGOEDGE_METAAPI_REGION"] == "london"
        assert env["ALGOEDGE_METAAPI_DOMAIN"] == "agiliumtrade.agiliumtrade.ai"

    def test_should_leave_the_region_to_metaapi_and_the_rest_to_the_app_when_unset(self) -> None:
        names = env_names(bridge_container())
        assert "ALGOEDGE_METAAPI_REGION" not in names
        # The app's defaults hold; without spec.bridge.metaapi.url, MetaAPI itself.
        assert not names & {
            "ALGOEDGE_METAAPI_URL",
            "ALGOEDGE_BRIDGE_LEASE_TTL",
            "ALGOEDGE_BRIDGE_POLL_SECONDS",
            "ALGOEDGE_BRIDGE_ACCOUNTS_PER_REPLICA",
        }

    def test_should_aim_the_bridge_at_the_metaapi_compatible_server_it_is_given(self) -> None:
        url = "http://metaapi-sim.test.svc.cluster.local:8090"
        env = literal_env(bridge_container(bridge={"metaapi": {"url": url}}))
        assert env["ALGOEDGE_METAAPI_URL"] == url

    def test_should_name_each_replica_after_its_pod(self) -> None:
        pod_name = next(
            e for e in bridge_container()["env"] if e["name"] == "ALGOEDGE_BRIDGE_POD_NAME"
        )
        assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    def test_should_give_it_only_the_credentials_key_of_the_internal_secrets(self) -> None:
        names = env_names(bridge_container())
        assert names >= APP_CONTRACT | {"ALGOEDGE_CREDENTIALS_KEY"}
        assert not names & {"ALGOEDGE_INTERNAL_TOKEN", "ALGOEDGE_JWT_SECRET", "ALGOEDGE_SMTP_URL"}

    def test_should_serve_metrics_and_probes_on_the_metrics_port(self) -> None:
        bridge = bridge_container()
        assert bridge["ports"] == METRICS_PORTS
        assert literal_env(bridge)["ALGOEDGE_METRICS_PORT"] == "9090"
        probes = {
            kind: (bridge[kind]["httpGet"]["path"], bridge[kind]["httpGet"]["port"])
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert probes == {
            "startupProbe": ("/livez", "metrics"),
            "livenessProbe": ("/livez", "metrics"),
            "readinessProbe": ("/readyz", "metrics"),
        }

    def test_should_restart_only_a_bridge_stuck_for_a_minute(self) -> None:
        liveness = bridge_container()["livenessProbe"]
        assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60

    def test_should_leave_time_for_a_clean_shutdown(self) -> None:
        pod = bridge_stateful_set(tenant(), tenant_secrets(), TARGETS)["spec"]["template"]["spec"]
        # The bridge deregisters, closes its connections and releases its leases in ~45 s.
        assert pod["terminationGracePeriodSeconds"] == BRIDGE_GRACE_SECONDS == 60

    def test_should_give_the_sdk_a_writable_working_directory(self) -> None:
        sts = bridge_stateful_set(tenant(), tenant_secrets(), TARGETS)
        bridge = container(sts, "bridge")
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        assert bridge["workingDir"] == "/var/lib/algoedge-bridge"
        assert {"name": "workdir", "mountPath": bridge["workingDir"]} in bridge["volumeMounts"]
        assert "emptyDir" in volumes["workdir"]

    def test_should_need_no_token_to_render_a_bridge_without_one(self) -> None:
        t = tenant(base=without_metaapi_token())
        bridge = container(bridge_stateful_set(t, tenant_secrets(), TARGETS), "bridge")
        assert "ALGOEDGE_METAAPI_TOKEN" not in env_names(bridge)

    def test_should_roll_only_the_bridge_when_the_metaapi_token_changes(self) -> None:
        t = tenant()
        before = tenant_secrets(metaapi_token_digest="a")
        after = tenant_secrets(metaapi_token_digest="b")
        assert pod_checksum(bridge_stateful_set(t, before, TARGETS)) != pod_checksum(
            bridge_stateful_set(t, after, TARGETS)
        )
        assert pod_checksum(api_deployment(t, before)) == pod_checksum(api_deployment(t, after))
        assert pod_checksum(worker_deployment(t, before, TARGETS)) == pod_checksum(
            worker_deployment(t, after, TARGETS)
        )

    def test_should_read_an_external_redis_url_from_the_referenced_secret(self) -> None:
        t = tenant(
            redis={"mode": "external", "external": {"secretRef": {"name": "ext", "key": "u"}}}
        )
        bridge = container(
            bridge_stateful_set(t, tenant_secrets(redis_password=None), TARGETS), "bridge"
        )
        redis = next(e for e in bridge["env"] if e["name"] == "ALGOEDGE_REDIS_URL")
        assert redis["valueFrom"]["secretKeyRef"] == {"name": "ext", "key": "u"}


class TestBridgeService:
    def test_should_publish_every_pods_metrics_port_headless(self) -> None:
        spec = bridge_service(tenant())["spec"]
        assert spec["clusterIP"] == "None"
        assert spec["ports"] == [
            {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
        ]
        assert spec["selector"]["app.kubernetes.io/component"] == "bridge"


class TestBridgeDisruptionBudget:
    def test_should_let_a_drain_take_one_bridge_pod_at_a_time(self) -> None:
        budget = bridge_disruption_budget(tenant())
        assert budget["metadata"]["name"] == "acme-bridge"
        assert budget["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in budget["spec"]
        sts = bridge_stateful_set(tenant(), tenant_secrets(), TARGETS)
        assert budget["spec"]["selector"] == sts["spec"]["selector"]


class TestBridgeNetworkPolicy:
    def egress(self, **spec: Any) -> list[dict[str, Any]]:
        secrets = tenant_secrets(redis_password=None, external_redis_port=6380)
        policy = bridge_network_policy(tenant(**spec), secrets)
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
            "bridge"
        )
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        return list(policy["spec"]["egress"])

    @staticmethod
    def component(rule: dict[str, Any]) -> str | None:
        peers = rule.get("to")
        return (
            peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] if peers else None
        )

    def test_should_admit_only_the_metrics_port(self) -> None:
        policy = bridge_network_policy(tenant(), tenant_secrets())
        assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9090}]}]

    def test_should_reach_only_dns_metaapi_pgbouncer_and_redis(self) -> None:
        rules = {
            (self.component(rule), tuple((p["protocol"], p["port"]) for p in rule["ports"]))
            for rule in self.egress()
        }
        assert rules == {
            (None, (("UDP", 53), ("TCP", 53))),
            (None, (("TCP", 443),)),
            ("pgbouncer", (("TCP", 6432),)),
            ("redis", (("TCP", 6379),)),
        }

    @pytest.mark.parametrize(
        ("url", "port"),
        [
            ("http://metaapi-sim.test.svc.cluster.local:8090", 8090),
            ("http://metaapi-sim", 80),
            ("https://metaapi.example.com/", 443),
        ],
    )
    def test_should_reach_a_metaapi_compatible_server_on_its_urls_port(
        self, url: str, port: int
    ) -> None:
        rules = self.egress(bridge={"metaapi": {"url": url}})
        metaapi = [r for r in rules if "to" not in r and r["ports"][0]["port"] != 53]
        # Its port instead of 443, not beside it: every MetaAPI call goes to that server.
        assert metaapi == [{"ports": [{"protocol": "TCP", "port": port}]}]

    def test_should_reach_an_external_redis_on_its_port(self) -> None:
        external = {"mode": "external", "external": {"secretRef": {"name": "ext"}}}
        redis = self.egress(redis=external)[-1]
        assert redis == {"ports": [{"protocol": "TCP", "port": 6380}]}


class TestNetworkPolicy:
    def test_should_admit_only_this_tenants_pods(self) -> None:
        spec = ingress_only_from_tenant(tenant(), "redis", port=6379)["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
        assert spec["ingress"] == [
            {
                "from": [
                    {
                        "podSelector": {
                            "matchLabels": {
                                "app.kubernetes.io/name": "algoedge",
                                "app.kubernetes.io/instance": "acme",
                            }
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 6379}],
            }
        ]


READ_REPLICAS = {"readReplicas": {"secretRef": {"name": "acme-db-replicas"}, "maxLagSeconds": 8}}
REPLICA = DatabaseTarget(
    host="replicas.example.com",
    port=5433,
    dbname="acme",
    user="acme",
    password="p@ss",
    sslmode="require",
)


def with_replicas() -> Tenant:
    """A tenant with ``spec.database.readReplicas`` (the primary's Secret stays as it is)."""
    return tenant(database=READ_REPLICAS)


class TestReadReplicas:
    def test_should_serve_the_replicas_as_the_databases_read_alias(self) -> None:
        ini = pgbouncer_config_map(with_replicas(), DATABASE, replica=REPLICA)["data"]
        assert (
            "acme_ro = host='replicas.example.com' port=5433 dbname='acme'\n"
            in (ini["pgbouncer.ini"])
        )
        assert "acme = host='db.example.com' port=5432 dbname='acme'" in ini["pgbouncer.ini"]

    def test_should_give_the_app_a_read_url_with_the_primarys_credentials(self) -> None:
        values = decoded(pgbouncer_secret(with_replicas(), DATABASE, replica=REPLICA))
        assert values["database-read-url"] == (
            "postgresql://acme:p%40ss@acme-pgbouncer.trading.svc:6432/acme_ro"
        )
        assert values["userlist.txt"] == '"acme" "p@ss"\n', "the replica has the same role"

    def test_should_log_into_the_replicas_as_their_own_user(self) -> None:
        reader = dataclasses.replace(REPLICA, user="reader", password='r"pw')
        ini = pgbouncer_config_map(with_replicas(), DATABASE, replica=reader)["data"]
        assert (
            "acme_ro = host='replicas.example.com' port=5433 dbname='acme' user='reader'"
            in (ini["pgbouncer.ini"])
        )
        values = decoded(pgbouncer_secret(with_replicas(), DATABASE, replica=reader))
        assert values["userlist.txt"] == '"acme" "p@ss"\n"reader" "r""pw"\n'

    def test_should_change_nothing_of_pgbouncer_without_replicas(self) -> None:
        ini = pgbouncer_config_map(tenant(), DATABASE)["data"]["pgbouncer.ini"]
        assert "_ro" not in ini
        assert set(decoded(pgbouncer_secret(tenant(), DATABASE))) == {
            "database-url",
            "userlist.txt",
        }

    def test_should_roll_pgbouncer_when_the_replicas_move(self) -> None:
        moved = dataclasses.replace(REPLICA, host="replicas-2.example.com")
        t = with_replicas()
        assert pod_checksum(pgbouncer_deployment(t, DATABASE, IMAGES, replica=REPLICA)) != (
            pod_checksum(pgbouncer_deployment(t, DATABASE, IMAGES, replica=moved))
        )

    def test_should_give_the_read_url_to_the_api_and_the_workers_alone(self) -> None:
        t, secrets = with_replicas(), tenant_secrets(read_replica=REPLICA)
        read_url = {
            "name": "ALGOEDGE_DATABASE_READ_URL",
            "valueFrom": {"secretKeyRef": {"name": "acme-pgbouncer", "key": "database-read-url"}},
        }
        for reader in (
            container(api_deployment(t, secrets), "api"),
            container(worker_deployment(t, secrets, TARGETS), "worker"),
        ):
            assert read_url in reader["env"]
            assert literal_env(reader)["ALGOEDGE_DATABASE_READ_MAX_LAG"] == "8"
        migrate = api_deployment(t, secrets)["spec"]["template"]["spec"]["initContainers"][0]
        for other in (
            migrate,
            container(beat_deployment(t, secrets), "beat"),
            container(bridge_stateful_set(t, secrets, TARGETS), "bridge"),
        ):
            assert not {n for n in env_names(other) if n.startswith("ALGOEDGE_DATABASE_READ")}

    def test_should_roll_the_api_and_the_workers_when_replicas_are_added(self) -> None:
        plain, replicated = tenant(), with_replicas()
        secrets, with_replica = tenant_secrets(), tenant_secrets(read_replica=REPLICA)
        assert pod_checksum(api_deployment(plain, secrets)) != pod_checksum(
            api_deployment(replicated, with_replica)
        )
        assert pod_checksum(worker_deployment(plain, secrets, TARGETS)) != pod_checksum(
            worker_deployment(replicated, with_replica, TARGETS)
        )
        assert pod_checksum(beat_deployment(plain, secrets)) == pod_checksum(
            beat_deployment(replicated, with_replica)
        )
        assert pod_checksum(bridge_stateful_set(plain, secrets, TARGETS)) == pod_checksum(
            bridge_stateful_set(replicated, with_replica, TARGETS)
        )

    def test_should_configure_every_child_from_the_same_replica(self) -> None:
        children = desired_children(
            with_replicas(),
            secrets=tenant_secrets(read_replica=REPLICA),
            targets=TARGETS,
            images=IMAGES,
        )
        by_name = {(c["kind"], c["metadata"]["name"]): c for c in children}
        assert "acme_ro = " in by_name[("ConfigMap", "acme-pgbouncer")]["data"]["pgbouncer.ini"]
        assert "database-read-url" in by_name[("Secret", "acme-pgbouncer")]["data"]
