"""Monitoring builders: PodMonitors and the PrometheusRule (label contract), exporter sidecars,
the NetworkPolicy rule for scrapes, and spec.monitoring's validation."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from algoedge_operator.builders.alerts import rule_groups
from algoedge_operator.builders.common import Images
from algoedge_operator.builders.monitors import (
    MONITORED_COMPONENTS,
    pod_monitor,
    prometheus_rule,
)
from algoedge_operator.builders.network import ingress_only_from_tenant
from algoedge_operator.builders.pgbouncer import (
    STATS_USER,
    pgbouncer_config,
    pgbouncer_deployment,
    pgbouncer_secret,
)
from algoedge_operator.builders.redis import redis_stateful_set
from algoedge_operator.model import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, SpecError, parse_spec

from tests.unit.operator.support import BASE_SPEC, DATABASE, merged, tenant, tenant_secrets
from tests.unit.operator.test_model import spec_schema

MONITORED: dict[str, Any] = {"monitoring": {"enabled": True, "labels": {"release": "kps"}}}
IMAGES = Images(
    redis="redis:7.4.2-alpine",
    pgbouncer="pgbouncer:1.24.1",
    pgbouncer_exporter="quay.io/prometheuscommunity/pgbouncer-exporter:v0.11.0",
    redis_exporter="docker.io/oliver006/redis_exporter:v1.62.0",
)


def containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in manifest["spec"]["template"]["spec"]["containers"]}


class TestPodMonitor:
    @pytest.mark.parametrize("component", MONITORED_COMPONENTS)
    def test_should_scrape_port_metrics_and_label_every_series(self, component: str) -> None:
        monitor = pod_monitor(tenant(**MONITORED), component)
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["name"] == f"acme-{component}"
        assert monitor["metadata"]["labels"]["release"] == "kps"
        assert monitor["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "algoedge-operator"
        assert monitor["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "algoedge",
            "app.kubernetes.io/instance": "acme",
            "app.kubernetes.io/component": component,
        }
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
        # The label contract of docs/architecture.md.
        assert endpoint["relabelings"] == [
            {
                "action": "replace",
                "sourceLabels": ["__meta_kubernetes_namespace"],
                "targetLabel": "namespace",
            },
            {"action": "replace", "targetLabel": "tenant", "replacement": "acme"},
            {"action": "replace", "targetLabel": "component", "replacement": component},
        ]


class TestPrometheusRule:
    def test_should_hold_the_rule_groups_of_the_tenant(self) -> None:
        rule = prometheus_rule(tenant(**MONITORED), users_per_api_pod=750)
        assert (rule["kind"], rule["metadata"]["name"]) == ("PrometheusRule", "acme-alerts")
        assert rule["metadata"]["labels"]["release"] == "kps"
        assert rule["spec"]["groups"] == rule_groups(
            tenant="acme", namespace="trading", api_sockets_per_pod=750
        )
        assert rule["spec"]["groups"] != rule_groups(tenant="acme", namespace="trading")


class TestExporters:
    def test_should_add_none_while_not_monitored(self) -> None:
        t = tenant()
        assert list(containers(pgbouncer_deployment(t, DATABASE, IMAGES))) == ["pgbouncer"]
        assert list(containers(redis_stateful_set(t, tenant_secrets(), IMAGES))) == ["redis"]
        assert "stats_users" not in pgbouncer_config(t, DATABASE)

    def test_should_run_pgbouncer_exporter_as_a_stats_user(self) -> None:
        t = tenant(**MONITORED)
        deployment = pgbouncer_deployment(t, DATABASE, IMAGES, stats_password="s3cret")
        exporter = containers(deployment)["exporter"]
        assert exporter["image"] == IMAGES.pgbouncer_exporter
        assert exporter["ports"] == [{"name": "metrics", "containerPort": 9127, "protocol": "TCP"}]
        assert exporter["env"] == [
            {
                "name": "PGBOUNCER_EXPORTER_CONNECTION_STRING",
                "valueFrom": {"secretKeyRef": {"name": "acme-pgbouncer", "key": "exporter-url"}},
            }
        ]
        assert exporter["securityContext"]["readOnlyRootFilesystem"] is True
        assert "readinessProbe" not in exporter  # never takes pgBouncer out of service
        assert f"stats_users = {STATS_USER}" in pgbouncer_config(t, DATABASE)
        data = pgbouncer_secret(t, DATABASE, stats_password="s3cret")["data"]
        decoded = {k: base64.b64decode(v).decode() for k, v in data.items()}
        assert decoded["exporter-url"] == (
            f"postgres://{STATS_USER}:s3cret@127.0.0.1:6432/pgbouncer?sslmode=disable"
        )
        assert f'"{STATS_USER}" "s3cret"' in decoded["userlist.txt"]

    def test_should_refuse_to_monitor_pgbouncer_without_a_stats_password(self) -> None:
        with pytest.raises(ValueError, match="stats password"):
            pgbouncer_secret(tenant(**MONITORED), DATABASE)

    def test_should_roll_pgbouncer_when_monitoring_is_turned_on(self) -> None:
        def annotation(manifest: dict[str, Any]) -> str:
            return str(manifest["spec"]["template"]["metadata"]["annotations"])

        plain = pgbouncer_deployment(tenant(), DATABASE, IMAGES)
        monitored = pgbouncer_deployment(tenant(**MONITORED), DATABASE, IMAGES, stats_password="s")
        assert annotation(plain) != annotation(monitored)

    def test_should_run_redis_exporter_with_the_redis_password(self) -> None:
        redis = redis_stateful_set(tenant(**MONITORED), tenant_secrets(), IMAGES)
        exporter = containers(redis)["exporter"]
        assert exporter["ports"] == [{"name": "metrics", "containerPort": 9121, "protocol": "TCP"}]
        env = {e["name"]: e for e in exporter["env"]}
        assert env["REDIS_ADDR"]["value"] == "redis://127.0.0.1:6379"
        assert env["REDIS_PASSWORD"]["valueFrom"] == {
            "secretKeyRef": {"name": "acme-redis", "key": "password"}
        }

    def test_should_leave_out_an_exporter_without_an_allowed_image(self) -> None:
        images = Images(redis="redis:7", pgbouncer="pgbouncer:1.24.1")
        t = tenant(**MONITORED)
        assert list(containers(redis_stateful_set(t, tenant_secrets(), images))) == ["redis"]
        deployment = pgbouncer_deployment(t, DATABASE, images, stats_password="s")
        assert list(containers(deployment)) == ["pgbouncer"]


class TestScrapePolicy:
    def test_should_let_scrapes_reach_the_metrics_port_only_while_monitored(self) -> None:
        plain = ingress_only_from_tenant(tenant(), "redis", port=6379)["spec"]["ingress"]
        monitored = ingress_only_from_tenant(tenant(**MONITORED), "redis", port=6379)
        assert monitored["spec"]["ingress"][: len(plain)] == plain
        assert monitored["spec"]["ingress"][len(plain) :] == [
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"algoedge.io/monitoring": "true"}}}
                ],
                "ports": [{"protocol": "TCP", "port": "metrics"}],
            }
        ]


class TestMonitoringSpec:
    def test_should_be_off_by_default(self) -> None:
        spec = parse_spec(BASE_SPEC)
        assert (spec.monitoring.enabled, spec.monitoring.labels) == (False, ())

    def test_should_read_the_labels(self) -> None:
        spec = parse_spec(merged(BASE_SPEC, {"monitoring": {"labels": {"release": "kps"}}}))
        assert spec.monitoring.labels == (("release", "kps"),)

    @pytest.mark.parametrize(
        ("labels", "message"),
        [
            ({"not a key": "x"}, "spec.monitoring.labels.not a key"),
            ({"release": "not a value"}, "spec.monitoring.labels.release"),
            ({"app.kubernetes.io/name": "x"}, "are the operator's own"),
            ({"x" * 64: "y"}, "spec.monitoring.labels"),
        ],
    )
    def test_should_refuse_what_is_not_a_label(self, labels: dict[str, str], message: str) -> None:
        with pytest.raises(SpecError, match=message.replace(".", r"\.")):
            parse_spec(merged(BASE_SPEC, {"monitoring": {"labels": labels}}))

    def test_should_check_labels_as_the_crd_does(self) -> None:
        labels = spec_schema()["properties"]["monitoring"]["properties"]["labels"]
        assert labels["additionalProperties"]["pattern"] == LABEL_VALUE_PATTERN
        assert f"k.matches('{LABEL_KEY_PATTERN}')" in labels["x-kubernetes-validations"][0]["rule"]
