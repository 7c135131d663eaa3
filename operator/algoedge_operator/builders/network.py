"""NetworkPolicies: Redis and pgBouncer accept connections only from this tenant's pods."""

from __future__ import annotations

from algoedge_operator.builders.common import (
    Manifest,
    metadata,
    selector_labels,
    tenant_pod_labels,
)
from algoedge_operator.model import Tenant


def ingress_only_from_tenant(tenant: Tenant, component: str, *, port: int) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(tenant, component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(tenant, component)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    # A podSelector without namespaceSelector means "in this namespace" only.
                    "from": [{"podSelector": {"matchLabels": tenant_pod_labels(tenant)}}],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }
