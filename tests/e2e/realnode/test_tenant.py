"""A tenant on the real node: real pods, real probes, migrations run by the init container.

The walk of issue 16, most valuable first; see docs/controlplane.md ("Real node") for what the
local node does not do (NetworkPolicy is not enforced: the kernel lacks nftables' queue).
"""

from __future__ import annotations

from typing import Any

import pytest

from devtools.controlplane import realnode
from devtools.controlplane.pytest_plugin import KubeCluster
from devtools.services import PostgresServer
from tests.e2e.operator.support import condition_is, wait_until
from tests.e2e.realnode.conftest import RealTenant


def pods(k8s: KubeCluster, namespace: str, component: str | None = None) -> list[Any]:
    selector = f"app.kubernetes.io/component={component}" if component else None
    return list(k8s.core.list_namespaced_pod(namespace, label_selector=selector).items)


def test_operator_runs_in_its_pod_under_its_service_account(
    real_node: KubeCluster, operator_release: str
) -> None:
    (pod,) = pods(real_node, operator_release)
    assert pod.spec.node_name == realnode.NODE_NAME
    assert pod.spec.service_account_name == "algoedge-operator"
    assert pod.status.phase == "Running"
    assert all(c.ready for c in pod.status.container_statuses)
    # A real network: the pod has an address on the node's bridge, not kwok's fake one.
    assert pod.status.pod_ip.startswith(realnode.POD_CIDR.rsplit(".", 2)[0])


@pytest.mark.timeout(600)
def test_tenant_becomes_ready_with_running_pods_and_migrations_applied(
    real_node: KubeCluster, tenant: RealTenant, pod_postgres: PostgresServer
) -> None:
    wait_until(
        "the tenant to be Ready on the real node",
        condition_is(real_node, tenant.namespace, tenant.name, "Ready", "True"),
        timeout=300,
    )
    running = pods(real_node, tenant.namespace)
    components = {p.metadata.labels.get("app.kubernetes.io/component") for p in running}
    assert {"api", "redis", "pgbouncer"} <= components, components
    for pod in running:
        assert pod.spec.node_name == realnode.NODE_NAME, pod.metadata.name
        if pod.status.phase == "Running":
            continue
        raise AssertionError(f"{pod.metadata.name} is {pod.status.phase}")
    # The API's init container ran `algoedge migrate` against the tenant's database for real.
    for pod in pods(real_node, tenant.namespace, "api"):
        (migrate,) = [s for s in pod.status.init_container_statuses if s.name == "migrate"]
        assert migrate.state.terminated is not None
        assert migrate.state.terminated.exit_code == 0
    tables = pod_postgres.psql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=tenant.database
    )
    assert "users" in tables, tables
