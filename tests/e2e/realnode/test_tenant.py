"""A tenant on the real node: real pods, real probes, migrations run by the init container, and
its NetworkPolicies enforced (by kube-router).

The walk of issue 16, most valuable first; see docs/controlplane.md ("Real node") for what the
local node does and does not do.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from algoedge_operator.builders.common import HTTP_PORT, METRICS_PORT, PGBOUNCER_PORT, REDIS_PORT

from devtools.controlplane import realnode
from devtools.controlplane.pytest_plugin import KubeCluster
from devtools.services import PostgresServer
from tests.e2e.operator.support import raw, wait_until
from tests.e2e.realnode.conftest import APP_IMAGE, RealTenant, wait_tenant_ready

CLIENT_SCRIPT = Path(__file__).with_name("client_script.py")
LOAD_SCRIPT = Path(__file__).with_name("load_script.py")
TCP_PROBE_SCRIPT = Path(__file__).with_name("tcp_probe_script.py")
#: How a connection a NetworkPolicy forbids ends for the client (kube-router REJECTs with ICMP;
#: a DROP would time out). Only together with the same target "open" from an allowed pod does
#: this prove the policy, not a dead server.
BLOCKED = frozenset({"refused", "unreachable", "timeout"})
OPEN = frozenset({"open"})


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
    wait_tenant_ready(real_node, tenant)
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


def start_script_pod(
    k8s: KubeCluster, namespace: str, script: Path, *args: str, name: str | None = None
) -> str:
    """Start ``script`` with ``args`` in a pod of the app image (and a ConfigMap holding it),
    both called ``name`` (default: after the script); the pod's name."""
    name = name or f"e2e-{script.stem.replace('_', '-')}"
    raw(
        k8s,
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"script.py": script.read_text()},
        },
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": APP_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "/script/script.py", *args],
                    "volumeMounts": [{"name": "script", "mountPath": "/script"}],
                }
            ],
            "volumes": [{"name": "script", "configMap": {"name": name}}],
        },
    }
    raw(k8s, "POST", f"/api/v1/namespaces/{namespace}/pods", pod)
    return name


def finished_log(k8s: KubeCluster, namespace: str, name: str, *, timeout: float = 120) -> str:
    """The log of pod ``name`` once it has succeeded (fails with the log if it failed)."""

    def finished() -> str | None:
        status = k8s.core.read_namespaced_pod(name, namespace).status
        phase = status.phase if status else None
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_until(f"pod {name} to finish", finished, timeout=timeout)
    log: str = k8s.core.read_namespaced_pod_log(name, namespace)
    assert phase == "Succeeded", log
    return log


@pytest.mark.timeout(600)
def test_a_pod_logs_in_through_the_api_service_and_receives_a_socketio_event(
    real_node: KubeCluster, tenant: RealTenant
) -> None:
    wait_tenant_ready(real_node, tenant)
    # Through the Service's DNS name and ClusterIP (node DNS, kube-proxy), to a real API pod
    # that talks to the tenant's Redis and pgBouncer pods and, behind them, Postgres.
    base = f"http://{tenant.name}-api:8080"
    log = finished_log(
        real_node,
        tenant.namespace,
        start_script_pod(real_node, tenant.namespace, CLIENT_SCRIPT, base),
    )
    (event,) = [line for line in log.splitlines() if line.startswith("EVENT ")]
    # The script checked the id against the account it linked; here: the event's shape.
    assert set(json.loads(event.removeprefix("EVENT "))) == {"id"}, log


def start_idle_pod(k8s: KubeCluster, namespace: str, name: str) -> str:
    """A pod of the app image with no labels at all (so none of the tenant's), idling until a
    test execs into it; returned once Running."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "probe",
                    "image": APP_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", "import time; time.sleep(900)"],
                }
            ],
        },
    }
    raw(k8s, "POST", f"/api/v1/namespaces/{namespace}/pods", pod)

    def running() -> bool:
        status = k8s.core.read_namespaced_pod(name, namespace).status
        return status is not None and status.phase == "Running"

    wait_until(f"pod {name} to run", running, timeout=120)
    return name


def tcp_outcomes(
    k8s: KubeCluster, namespace: str, pod: str, targets: list[str], *, container: str
) -> dict[str, str]:
    """What one TCP connection from ``pod`` to each ``host:port`` met (tcp_probe_script.py)."""
    result = k8s.kubectl_run(
        "exec",
        f"--namespace={namespace}",
        pod,
        f"--container={container}",
        "--",
        "python",
        "-c",
        TCP_PROBE_SCRIPT.read_text(),
        *targets,
    )
    outcomes: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcomes


@pytest.mark.timeout(600)
def test_network_policies_admit_only_the_tenants_pods_to_redis_and_pgbouncer(
    real_node: KubeCluster, tenant: RealTenant, operator_release: str
) -> None:
    wait_tenant_ready(real_node, tenant)
    redis = f"{tenant.name}-redis:{REDIS_PORT}"
    pgbouncer = f"{tenant.name}-pgbouncer:{PGBOUNCER_PORT}"
    public = f"{tenant.name}-api:{HTTP_PORT}"
    # The API's metrics port also serves /internal/v1/*: only the operator and monitoring. The
    # full name: the operator asks from its own namespace.
    metrics = f"{tenant.name}-api.{tenant.namespace}.svc.{realnode.CLUSTER_DOMAIN}:{METRICS_PORT}"
    api = api_pod(real_node, tenant.namespace)
    (operator,) = pods(real_node, operator_release)
    probe = start_idle_pod(real_node, tenant.namespace, "e2e-unlabelled-probe")
    expected: dict[str, dict[str, frozenset[str]]] = {
        # A pod of the tenant's namespace without the tenant's labels: only the public port.
        "probe": {redis: BLOCKED, pgbouncer: BLOCKED, metrics: BLOCKED, public: OPEN},
        # The same targets from pods the policies admit: the servers are there and listening.
        "api": {redis: OPEN, pgbouncer: OPEN},
        "operator": {metrics: OPEN},
    }
    observed: dict[str, dict[str, str]] = {}

    def as_expected() -> bool:
        # kube-router applies policies a moment after pods change: look again until it holds.
        observed["probe"] = tcp_outcomes(
            real_node, tenant.namespace, probe, list(expected["probe"]), container="probe"
        )
        observed["api"] = tcp_outcomes(
            real_node, tenant.namespace, api.metadata.name, list(expected["api"]), container="api"
        )
        observed["operator"] = tcp_outcomes(
            real_node,
            operator_release,
            operator.metadata.name,
            list(expected["operator"]),
            container=operator.spec.containers[0].name,
        )
        return all(
            observed[source][target] in allowed
            for source, targets in expected.items()
            for target, allowed in targets.items()
        )

    try:
        wait_until("the NetworkPolicies to be enforced", as_expected, timeout=90)
    except pytest.fail.Exception as error:
        pytest.fail(f"{error}\nexpected: {expected}\nobserved: {observed}")
    finally:
        real_node.core.delete_namespaced_pod(probe, tenant.namespace, grace_period_seconds=0)


@pytest.mark.timeout(600)
def test_the_api_serves_through_the_eviction_of_one_of_its_pods(
    real_node: KubeCluster, tenant: RealTenant
) -> None:
    wait_tenant_ready(real_node, tenant)
    base = f"http://{tenant.name}-api:8080"
    load = start_script_pod(real_node, tenant.namespace, LOAD_SCRIPT, base, "45")

    def started() -> bool:
        status = real_node.core.read_namespaced_pod(load, tenant.namespace).status
        if status is None or status.phase != "Running":
            return False
        return "STARTED" in real_node.core.read_namespaced_pod_log(load, tenant.namespace)

    wait_until("the load pod to get its first answer", started, timeout=120)
    victim = api_pod(real_node, tenant.namespace).metadata.name
    # An eviction, as a node drain does: the PodDisruptionBudget is asked first.
    raw(
        real_node,
        "POST",
        f"/api/v1/namespaces/{tenant.namespace}/pods/{victim}/eviction",
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": victim, "namespace": tenant.namespace},
        },
    )
    log = finished_log(real_node, tenant.namespace, load, timeout=180)
    (summary,) = [line for line in log.splitlines() if line.startswith("OK ")]
    _, served, _, failed = summary.split()
    assert int(failed) == 0, log
    assert int(served) > 0, log
    # The Deployment replaced the evicted pod.
    wait_until(
        "two ready API pods again",
        lambda: (
            len(
                [
                    p
                    for p in pods(real_node, tenant.namespace, "api")
                    if p.metadata.name != victim
                    and any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
                    )
                ]
            )
            >= 2
        ),
        timeout=180,
    )


def api_pod(k8s: KubeCluster, namespace: str) -> Any:
    """One running API pod."""
    live = [p for p in pods(k8s, namespace, "api") if p.metadata.deletion_timestamp is None]
    return next(p for p in live if p.status.phase == "Running")


def api_restarts(k8s: KubeCluster, namespace: str, name: str) -> int:
    status = k8s.core.read_namespaced_pod(name, namespace).status
    (api,) = [c for c in (status.container_statuses if status else None) or [] if c.name == "api"]
    return int(api.restart_count)


@pytest.mark.timeout(600)
def test_the_liveness_probe_restarts_a_hung_api_container(
    real_node: KubeCluster, tenant: RealTenant
) -> None:
    wait_tenant_ready(real_node, tenant)
    pod = api_pod(real_node, tenant.namespace)
    before = api_restarts(real_node, tenant.namespace, pod.metadata.name)
    # Hang the API (SIGSTOP to every process of the container, from the host: its PID 1 ignores
    # signals sent from inside its pid namespace). The port still accepts connections, nothing
    # answers, so only the kubelet's /healthz probe can notice.
    status = pod.status
    (api,) = [c for c in status.container_statuses if c.name == "api"]
    hung = realnode.container_pids(api.container_id)
    assert hung, f"no process of container {api.container_id} on this host"
    for pid in hung:
        os.kill(pid, signal.SIGSTOP)

    def restarted_and_ready() -> bool:
        status = real_node.core.read_namespaced_pod(pod.metadata.name, tenant.namespace).status
        containers = (status.container_statuses if status else None) or []
        (api,) = [c for c in containers if c.name == "api"]
        return bool(api.restart_count > before and api.ready)

    wait_until("the kubelet to restart the hung API container", restarted_and_ready, timeout=240)
    events = real_node.core.list_namespaced_event(
        tenant.namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
    ).items
    assert any(e.reason == "Unhealthy" and "Liveness" in (e.message or "") for e in events), [
        (e.reason, e.message) for e in events
    ]
