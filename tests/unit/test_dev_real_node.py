"""`make dev REAL_NODE=1` without a node: the tenant it applies, what it prints about the pods, and
its refusal while another real node runs on the host."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from algoedge_operator.builders.api import api_deployment
from algoedge_operator.model import parse_tenant

from devtools.controlplane import realnode
from devtools.controlplane.cluster import PidRecord, _start_ticks
from devtools.dev import dev_tenant
from devtools.pod_events import NamespaceWatch, pod_state
from tests.unit.operator.support import tenant_secrets


class TestDevTenant:
    def test_on_the_real_node_its_pods_run_the_images_built_here_and_no_bridge(self) -> None:
        body: dict[str, Any] = {**dev_tenant(real_node=True), "metadata": {"name": "dev"}}
        body["metadata"].update(namespace="dev", uid="u", generation=1)
        tenant = parse_tenant(body)
        deployment = api_deployment(tenant, tenant_secrets())
        pod = deployment["spec"]["template"]["spec"]
        for container in [*pod["initContainers"], *pod["containers"]]:
            assert container["image"] == realnode.APP_IMAGE
            assert container["imagePullPolicy"] == "Never"
        # No MetaAPI token referenced: the operator runs no bridge pods (none could reach the
        # simulator on loopback).
        assert tenant.spec.bridge.metaapi.token_secret is None

    def test_on_kwok_it_keeps_the_bridge_that_follows_linked_accounts(self) -> None:
        body: dict[str, Any] = {**dev_tenant(real_node=False), "metadata": {"name": "dev"}}
        body["metadata"].update(namespace="dev", uid="u", generation=1)
        tenant = parse_tenant(body)
        assert tenant.spec.bridge.metaapi.token_secret is not None
        assert tenant.spec.bridge.accounts_per_replica == 2


def pod(name: str, **status: Any) -> dict[str, Any]:
    node = status.pop("node", realnode.NODE_NAME)
    deleting = status.pop("deleting", False)
    metadata: dict[str, Any] = {"name": name}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"nodeName": node}, "status": status}


def ready(value: bool) -> list[dict[str, str]]:
    return [{"type": "Ready", "status": "True" if value else "False"}]


def waiting(name: str, reason: str, restarts: int = 0) -> dict[str, Any]:
    return {"name": name, "restartCount": restarts, "state": {"waiting": {"reason": reason}}}


def running(name: str, restarts: int = 0) -> dict[str, Any]:
    return {"name": name, "restartCount": restarts, "state": {"running": {}}}


class TestPodState:
    def test_says_where_a_pod_is_on_its_way_to_serving(self) -> None:
        unscheduled = pod(
            "a",
            node=None,
            phase="Pending",
            conditions=[
                {"type": "PodScheduled", "status": "False", "message": "0/2 nodes are available"}
            ],
        )
        assert pod_state(unscheduled) == "Pending: not scheduled (0/2 nodes are available)"
        creating = pod(
            "a",
            phase="Pending",
            initContainerStatuses=[waiting("migrate", "PodInitializing")],
            containerStatuses=[waiting("api", "PodInitializing")],
        )
        assert pod_state(creating) == "Pending: PodInitializing"
        migrating = pod(
            "a",
            phase="Pending",
            initContainerStatuses=[running("migrate")],
            containerStatuses=[waiting("api", "PodInitializing")],
        )
        assert pod_state(migrating) == "init: migrate"
        starting = pod(
            "a", phase="Running", conditions=ready(False), containerStatuses=[running("api")]
        )
        assert pod_state(starting) == "Running, not ready"
        serving = pod(
            "a", phase="Running", conditions=ready(True), containerStatuses=[running("api", 2)]
        )
        assert pod_state(serving) == "Running, ready, 2 restarts"
        assert pod_state(pod("a", phase="Running", deleting=True)) == "terminating"

    def test_puts_trouble_first(self) -> None:
        missing = pod("a", phase="Pending", containerStatuses=[waiting("api", "ErrImageNeverPull")])
        assert pod_state(missing) == "Pending: ErrImageNeverPull"
        crashing = pod(
            "a",
            phase="Running",
            conditions=ready(False),
            containerStatuses=[waiting("api", "CrashLoopBackOff", 3)],
        )
        assert pod_state(crashing) == "Running, not ready: CrashLoopBackOff, 3 restarts"


class TestNamespaceWatch:
    def test_reports_each_change_once_and_nothing_when_nothing_changed(self) -> None:
        watch = NamespaceWatch(api_service="dev-api")
        pending = pod("dev-api-1", phase="Pending", containerStatuses=[waiting("api", "X")])
        tenant = {
            "metadata": {"name": "dev"},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "Progressing", "message": "m"}
                ]
            },
        }
        service = {
            "metadata": {"name": "dev-api"},
            "spec": {
                "clusterIP": "10.96.0.7",
                "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
            },
        }
        warning = {
            "metadata": {"uid": "e1"},
            "type": "Warning",
            "reason": "Unhealthy",
            "message": "Readiness probe failed",
            "count": 1,
            "involvedObject": {"kind": "Pod", "name": "dev-api-1"},
        }
        normal = {**warning, "metadata": {"uid": "e2"}, "type": "Normal", "reason": "Pulled"}
        first = watch.changes(
            pods=[pending], events=[warning, normal], tenants=[tenant], services=[service]
        )
        assert first == [
            "tenant dev: not Ready (Progressing: m)",
            "pod dev-api-1: Pending: X",
            "warning pod/dev-api-1: Unhealthy: Readiness probe failed",
            "tenant API (pods, Service dev-api): http://10.96.0.7:8080  "
            "(from this host through kube-proxy; try http://10.96.0.7:8080/readyz)",
        ]
        assert (
            watch.changes(
                pods=[pending], events=[warning, normal], tenants=[tenant], services=[service]
            )
            == []
        )
        serving = pod("dev-api-1", phase="Running", conditions=ready(True))
        again = {**warning, "count": 3}
        later = {**warning, "metadata": {"uid": "e3"}, "message": "Liveness probe failed\n"}
        assert watch.changes(
            pods=[serving], events=[again, later], tenants=[], services=[service]
        ) == [
            "pod dev-api-1: Running, ready",
            "warning pod/dev-api-1: Unhealthy: Liveness probe failed",
        ]
        assert watch.changes(pods=[], events=[again], tenants=[], services=[]) == [
            "pod dev-api-1: gone"
        ]


@pytest.fixture
def owner_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host's real-node owner file, moved into the test's folder (the real one is shared
    by every real node of this host)."""
    path = tmp_path / "realnode.owner"
    monkeypatch.setattr(realnode, "OWNER_FILE", path)
    return path


@pytest.fixture(params=["kubelet", "kube-apiserver"])
def live_kubelet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A cluster directory whose kubelet pid file names a live process, or (its node still
    starting: the host claimed, no kubelet yet) its apiserver's."""
    directory = tmp_path / "other-cluster"
    (directory / "pids").mkdir(parents=True)
    process = subprocess.Popen(["sleep", "60"])
    ticks = _start_ticks(process.pid)
    assert ticks is not None
    PidRecord(request.param, process.pid, ticks).write(directory / "pids" / f"{request.param}.pid")
    yield directory
    process.kill()
    process.wait()


class TestOneRealNodePerHost:
    def test_refuses_while_another_clusters_kubelet_lives_and_says_how_to_stop_it(
        self, owner_file: Path, live_kubelet: Path, tmp_path: Path
    ) -> None:
        owner_file.write_text(f"{live_kubelet}\n")
        mine = realnode.RealNode(tmp_path / "dev-cluster")
        message = mine.host_taken()
        assert message is not None
        assert f"cluster down --dir {live_kubelet}" in message
        with pytest.raises(realnode.NodeError, match="another real node runs on this host"):
            mine.claim_host()
        assert owner_file.read_text() == f"{live_kubelet}\n"
        # Its own directory's node is its own to restart.
        assert realnode.RealNode(live_kubelet).host_taken() is None

    def test_takes_the_host_when_the_owner_died(
        self, owner_file: Path, live_kubelet: Path, tmp_path: Path
    ) -> None:
        owner_file.write_text(f"{live_kubelet}\n")
        assert realnode.RealNode(tmp_path / "dev-cluster").host_taken() is not None
        for record in (live_kubelet / "pids").glob("*.pid"):
            record.write_text("999999999 1\n")
        # (claim_host would now clean up after the dead node: not here, it kills kubepods.)
        assert realnode.RealNode(tmp_path / "dev-cluster").host_taken() is None
