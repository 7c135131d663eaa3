"""NetworkPolicies: Redis and pgBouncer accept connections only from this tenant's pods; the
bridge reaches only what it needs."""

from __future__ import annotations

from typing import Any

from algoedge_operator.builders.common import (
    HTTP_PORT,
    METRICS_PORT,
    METRICS_PORT_NAME,
    PGBOUNCER_PORT,
    REDIS_PORT,
    Manifest,
    TenantSecrets,
    metadata,
    selector_labels,
    tenant_pod_labels,
)
from algoedge_operator.model import Tenant

DNS_PORT = 53
#: A namespace with this label set to "true" may reach every tenant API's metrics port: label the
#: namespace Prometheus runs in. A namespace label takes rights over the namespace, which a pod
#: label (that anyone who may create a pod can set) does not.
MONITORING_NAMESPACE_LABEL = "algoedge.io/monitoring"
#: The operator's pods, in whatever namespace it is installed (the labels of the chart and of
#: k8s/operator/deployment.yaml).
OPERATOR_POD_LABELS = {
    "app.kubernetes.io/component": "operator",
    "app.kubernetes.io/part-of": "algoedge",
}


#: Pods of namespaces labelled for monitoring: who may scrape a tenant's metrics ports.
SCRAPERS: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {MONITORING_NAMESPACE_LABEL: "true"}}
}


def ingress_only_from_tenant(tenant: Tenant, component: str, *, port: int) -> Manifest:
    """``port`` only from this tenant's pods; while monitored, also the exporter's port
    ``metrics`` from namespaces labelled for monitoring (the same peers as the API's metrics
    port)."""
    ingress: list[dict[str, Any]] = [
        {
            # A podSelector without namespaceSelector means "in this namespace" only.
            "from": [{"podSelector": {"matchLabels": tenant_pod_labels(tenant)}}],
            "ports": [_tcp(port)],
        }
    ]
    if tenant.spec.monitoring.enabled:
        # A named port: the exporter's containerPort, whatever its number.
        ingress.append(
            {"from": [SCRAPERS], "ports": [{"protocol": "TCP", "port": METRICS_PORT_NAME}]}
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(tenant, component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(tenant, component)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def api_network_policy(tenant: Tenant) -> Manifest:
    """The public port stays open to any source (the Ingress controller, other services); the
    metrics port, which also serves /internal/v1/* (capacity, behind the internal token), only to
    the operator and to pods of namespaces labelled for monitoring. Kubelet probes are not
    subject to NetworkPolicies."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(tenant, "api"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(tenant, "api")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [_tcp(HTTP_PORT)]},
                {
                    "from": [
                        {
                            # An empty namespaceSelector: the operator's namespace, whichever.
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)},
                        },
                        SCRAPERS,
                    ],
                    "ports": [_tcp(METRICS_PORT)],
                },
            ],
        },
    }


def _tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def bridge_network_policy(tenant: Tenant, secrets: TenantSecrets) -> Manifest:
    """The bridge holds the MetaAPI token and decrypts trading passwords: it may reach MetaAPI
    (HTTPS, or the port of ``spec.bridge.metaapi.url``), DNS, pgBouncer and Redis, nothing else;
    and only its metrics port is reachable, from wherever the other app pods' ports are (nothing
    restricts those)."""
    redis: dict[str, Any]
    if tenant.spec.redis.mode == "managed":
        redis = {
            "to": [{"podSelector": {"matchLabels": selector_labels(tenant, "redis")}}],
            "ports": [_tcp(REDIS_PORT)],
        }
    else:
        # An external Redis can be anywhere (another namespace, a cloud service): its port only.
        redis = {"ports": [_tcp(secrets.external_redis_port or REDIS_PORT)]}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(tenant, "bridge"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(tenant, "bridge")},
            "policyTypes": ["Ingress", "Egress"],
            # No "from": any source (Prometheus, wherever it runs); kubelet probes are not
            # subject to NetworkPolicies.
            "ingress": [{"ports": [_tcp(METRICS_PORT)]}],
            "egress": [
                # No "to": kube-dns, or a node-local DNS cache on a link-local address.
                {"ports": [{"protocol": "UDP", "port": DNS_PORT}, _tcp(DNS_PORT)]},
                # MetaAPI's REST and streaming hosts (per region, behind a CDN) have no fixed
                # addresses: the policy can pin only the port (443, or spec.bridge.metaapi.url's).
                {"ports": [_tcp(tenant.spec.bridge.metaapi.port)]},
                {
                    # A podSelector without namespaceSelector means "in this namespace" only.
                    "to": [{"podSelector": {"matchLabels": selector_labels(tenant, "pgbouncer")}}],
                    "ports": [_tcp(PGBOUNCER_PORT)],
                },
                redis,
            ],
        },
    }
