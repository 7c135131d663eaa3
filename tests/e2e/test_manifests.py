"""The plain manifests in crds/ and k8s/ are what `kubectl apply` accepts on a real API server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from devtools.controlplane.pytest_plugin import KubeCluster, wait_until

REPO = Path(__file__).resolve().parents[2]


def kubectl(k8s: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(k8s.kubectl), *args],
        env=k8s.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_should_apply_the_crd_operator_and_sample_tenants(k8s: KubeCluster) -> None:
    crd = kubectl(k8s, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    assert crd.returncode == 0, crd.stderr
    wait_until(
        "the AlgoEdgeTenant CRD to be established",
        lambda: (
            kubectl(
                k8s,
                "wait",
                "--for=condition=Established",
                "--timeout=5s",
                "crd/algoedgetenants.algoedge.io",
            ).returncode
            == 0
        ),
        timeout=60,
    )
    # Everything else is checked by the API server (schemas, CEL rules, RBAC objects) without
    # being persisted, so this test leaves nothing behind for the operator tests.
    samples = [
        doc
        for f in sorted((REPO / "k8s/samples").glob("*.yaml"))
        for doc in yaml.safe_load_all(f.read_text())
        if doc
    ]
    for namespace in {"algoedge-system"} | {doc["metadata"]["namespace"] for doc in samples}:
        kubectl(k8s, "create", "namespace", namespace)
    for folder in ("k8s/operator", "k8s/samples"):
        result = kubectl(k8s, "apply", "--dry-run=server", "-f", str(REPO / folder))
        assert result.returncode == 0, f"{folder}: {result.stderr}"
        assert "created (server dry run)" in result.stdout
