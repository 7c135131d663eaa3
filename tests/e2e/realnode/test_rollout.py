"""A config change rolls the API pods without failed requests (issue 16's walk, on real pods).

A client pod sends requests through the ``<t>-api`` Service the whole time; the tenant's
per-user rate limit changes (its ConfigMap, hence the pod template's config checksum); the
Deployment replaces every API pod by surge (maxUnavailable 0), each old pod leaves the Service
during its preStop sleep and drains on SIGTERM. The load counts before, during and after.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from devtools.controlplane import realnode
from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.support import patch_tenant, wait_until
from tests.e2e.realnode.conftest import RealTenant, wait_tenant_ready
from tests.e2e.realnode.test_tenant import LOAD_SCRIPT, finished_log, pods, start_script_pod

#: What a platform engineer would change: a higher per-user rate limit (the default is 100/900).
NEW_PER_USER = {"requests": 250, "windowSeconds": 900}
#: Requests the load must get answered through the new pods alone, after the rollout.
AFTER_REQUESTS = 20


def is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def template_hash(pod: Any) -> str:
    return str(pod.metadata.labels["pod-template-hash"])


def signal_pod(k8s: KubeCluster, namespace: str, name: str, signum: int) -> None:
    """Signal the processes of the pod's one container, from the host."""
    status = k8s.core.read_namespaced_pod(name, namespace).status
    (container,) = (status.container_statuses if status else None) or []
    container_id = str(container.container_id)
    pids = realnode.container_pids(container_id)
    assert pids, f"no process of container {container_id} on this host"
    for pid in pids:
        os.kill(pid, signum)


def counts(k8s: KubeCluster, namespace: str, name: str) -> list[tuple[int, int]]:
    """The load's ``COUNT <ok> <failed>`` lines so far."""
    log = k8s.core.read_namespaced_pod_log(name, namespace)
    lines = [line.split() for line in log.splitlines() if line.startswith("COUNT ")]
    return [(int(ok), int(failed)) for _, ok, failed in lines]


def count_now(k8s: KubeCluster, namespace: str, name: str) -> tuple[int, int]:
    """Ask the load for its counts (SIGUSR1) and wait for its answer: (ok, failed)."""
    printed = len(counts(k8s, namespace, name))
    signal_pod(k8s, namespace, name, signal.SIGUSR1)

    def answer() -> tuple[int, int] | None:
        seen = counts(k8s, namespace, name)
        return seen[printed] if len(seen) > printed else None

    return wait_until("the load pod to print its counts", answer, timeout=30)


def rolled_out(k8s: KubeCluster, namespace: str, old: set[str], minimum: int) -> list[Any] | None:
    """The API pods once none is left of the ``old`` template hashes (terminating ones included)
    and at least ``minimum`` of the new ones are Ready; None before."""
    api = pods(k8s, namespace, "api")
    if any(template_hash(p) in old for p in api):
        return None
    live = [p for p in api if p.metadata.deletion_timestamp is None and is_ready(p)]
    return live if len(live) >= minimum and len(live) == len(api) else None


@pytest.mark.timeout(900)
def test_a_config_change_rolls_the_api_pods_without_failed_requests(
    real_node: KubeCluster, tenant: RealTenant
) -> None:
    k8s, namespace = real_node, tenant.namespace
    wait_tenant_ready(k8s, tenant)
    # Two ready API pods, one template (the tenant asks for two at least).
    before = wait_until(
        "two ready API pods of one template",
        lambda: rolled_out(k8s, namespace, set(), 2),
        timeout=180,
    )
    old_names = {p.metadata.name for p in before}
    old_hashes = {template_hash(p) for p in before}

    # A bound far beyond the rollout; the test ends the load with SIGTERM.
    load = start_script_pod(
        k8s, namespace, LOAD_SCRIPT, f"http://{tenant.name}-api:8080", "800", name="e2e-rollout"
    )

    def started() -> bool:
        status = k8s.core.read_namespaced_pod(load, namespace).status
        if status is None or status.phase != "Running":
            return False
        return "STARTED" in k8s.core.read_namespaced_pod_log(load, namespace)

    wait_until("the load pod to get its first answer", started, timeout=120)
    ok_before, _ = count_now(k8s, namespace, load)

    patch_tenant(k8s, namespace, tenant.name, {"spec": {"rateLimits": {"perUser": NEW_PER_USER}}})
    after = wait_until(
        "every API pod replaced by a Ready pod of the new template",
        lambda: rolled_out(k8s, namespace, old_hashes, 2),
        timeout=600,
    )
    ok_rolled, _ = count_now(k8s, namespace, load)
    config = k8s.core.read_namespaced_config_map(f"{tenant.name}-config", namespace)
    assert (config.data or {}).get("ALGOEDGE_RATE_LIMIT_PER_USER") == "250/900", config.data
    assert not old_names & {p.metadata.name for p in after}

    # Served by the new pods alone for a while, then stopped.
    wait_until(
        f"{AFTER_REQUESTS} more answers after the rollout",
        lambda: count_now(k8s, namespace, load)[0] >= ok_rolled + AFTER_REQUESTS,
        timeout=120,
    )
    signal_pod(k8s, namespace, load, signal.SIGTERM)
    log = finished_log(k8s, namespace, load, timeout=60)
    # The namespace is the session's: the other tests list its pods and expect the tenant's only.
    k8s.core.delete_namespaced_pod(load, namespace, grace_period_seconds=0)
    k8s.core.delete_namespaced_config_map(load, namespace)
    wait_until(
        f"pod {load} to be gone",
        lambda: load not in {p.metadata.name for p in pods(k8s, namespace)},
        timeout=60,
    )
    (summary,) = [line for line in log.splitlines() if line.startswith("OK ")]
    _, served, _, failed = summary.split()
    # Shown with the test's output (-rA) and on failure: how the load split over the rollout.
    print(f"answered: {ok_before} before, {ok_rolled - ok_before} during, then {served} in all")
    assert int(failed) == 0, log
    # The load ran before the change, through the rollout, and after it.
    assert ok_before > 0, log
    assert ok_rolled > ok_before, log
    assert int(served) >= ok_rolled + AFTER_REQUESTS, log
