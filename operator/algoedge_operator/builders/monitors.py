"""Prometheus Operator objects of a monitored tenant: one PodMonitor per component, one PrometheusRule.

Every series scraped through these PodMonitors carries the monitoring label contract
(docs/architecture.md, "Monitoring labels"): ``namespace``, ``tenant`` (the AlgoEdgeTenant's
name) and ``component``. Their kinds come from the Prometheus Operator's CRDs, which a cluster
may not have: the reconciler writes them only where the API server serves them.
"""

from __future__ import annotations

from typing import Any

from algoedge_operator.builders.alerts import rule_groups
from algoedge_operator.builders.common import (
    METRICS_PORT_NAME,
    Manifest,
    labels,
    metadata,
    selector_labels,
)
from algoedge_operator.model import Tenant

MONITORING_API_VERSION = "monitoring.coreos.com/v1"
#: The components with a PodMonitor ``<t>-<component>``: each exposes container port ``metrics``.
MONITORED_COMPONENTS = ("api", "worker", "beat", "bridge", "pgbouncer", "redis")
#: ``<t>-alerts``: the tenant's PrometheusRule.
RULES_COMPONENT = "alerts"
METRICS_PATH = "/metrics"


def monitor_labels(tenant: Tenant, component: str) -> dict[str, str]:
    """The operator's labels plus ``spec.monitoring.labels`` (which may not use the operator's
    ``app.kubernetes.io/`` keys: the model refuses them)."""
    return {**labels(tenant, component), **dict(tenant.spec.monitoring.labels)}


def _metadata(tenant: Tenant, component: str) -> dict[str, Any]:
    return {**metadata(tenant, component), "labels": monitor_labels(tenant, component)}


def contract_relabelings(tenant: Tenant, component: str) -> list[dict[str, Any]]:
    """The relabelings that put the label contract on every series of a target."""
    return [
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_namespace"],
            "targetLabel": "namespace",
        },
        {"action": "replace", "targetLabel": "tenant", "replacement": tenant.name},
        {"action": "replace", "targetLabel": "component", "replacement": component},
    ]


def pod_monitor(tenant: Tenant, component: str) -> Manifest:
    """Scrapes port ``metrics`` of every pod of ``component`` (in the tenant's namespace: a
    PodMonitor without namespaceSelector looks only in its own)."""
    return {
        "apiVersion": MONITORING_API_VERSION,
        "kind": "PodMonitor",
        "metadata": _metadata(tenant, component),
        "spec": {
            "selector": {"matchLabels": selector_labels(tenant, component)},
            "podMetricsEndpoints": [
                {
                    "port": METRICS_PORT_NAME,
                    "path": METRICS_PATH,
                    "relabelings": contract_relabelings(tenant, component),
                }
            ],
        },
    }


def prometheus_rule(tenant: Tenant, *, users_per_api_pod: int) -> Manifest:
    """The tenant's alerting rules (:func:`algoedge_operator.builders.alerts.rule_groups`); the
    sockets-near-capacity alert compares with the operator's users per API pod."""
    return {
        "apiVersion": MONITORING_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": _metadata(tenant, RULES_COMPONENT),
        "spec": {
            "groups": rule_groups(
                tenant=tenant.name,
                namespace=tenant.namespace,
                api_sockets_per_pod=users_per_api_pod,
            )
        },
    }
