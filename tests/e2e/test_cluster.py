"""Prove the e2e cluster is real Kubernetes: schemas, controllers, scheduling, GC, kubectl, helm."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devtools.controlplane.cluster import CONTEXT_NAME, CONTROLPLANE_DIR, FAKE_NODE_NAME
from devtools.controlplane.pytest_plugin import KubeCluster, wait_until

pytestmark = pytest.mark.e2e

REPO_ROOT = CONTROLPLANE_DIR.parent.parent
# pause never runs here: kwok plays the kubelet. On kind it is a real, tiny image.
IMAGE = "registry.k8s.io/pause:3.10"


def gone(read: Callable[[], object]) -> Callable[[], bool]:
    """A probe that is True once ``read`` raises 404."""

    def probe() -> bool:
        try:
            read()
        except client.ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    return probe


def owners(metadata: client.V1ObjectMeta | None) -> list[str]:
    assert metadata is not None
    return [reference.name for reference in metadata.owner_references or []]


def ready_replicas(k8s: KubeCluster, name: str, namespace: str) -> int:
    status = k8s.apps.read_namespaced_deployment_status(name, namespace).status
    return (status.ready_replicas if status else None) or 0


def pod_phases(k8s: KubeCluster, namespace: str, selector: str) -> list[str | None]:
    pods = k8s.core.list_namespaced_pod(namespace, label_selector=selector).items
    return [pod.status.phase if pod.status else None for pod in pods]


def pinned_version(module_dir: str, module: str) -> str:
    go_mod = (CONTROLPLANE_DIR / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod, re.MULTILINE)
    assert match, f"{module} not required in {module_dir}/go.mod"
    return match.group(1)


def deployment(name: str, *, replicas: int, labels: dict[str, str]) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="main", image=IMAGE)]),
            ),
        ),
    )


# ---------------------------------------------------------------------------------------
# The safety net: the plugin refuses contexts that could be a real cluster.


def collect_with(*options: str) -> subprocess.CompletedProcess[str]:
    """Collect this module in a child pytest with ``options`` (no cluster is started)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options, "--collect-only", "-q", __file__],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--kube-context=prod-eu-1"], "--kube-context 'prod-eu-1' is not allowed"),
        (["--kube-context=kind-dev", "--kind"], "mutually exclusive"),
    ],
)
def test_refuses_unsafe_cluster_choice(options: list[str], message: str) -> None:
    result = collect_with(*options)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("context", ["kind-dev", CONTEXT_NAME])
def test_accepts_kind_and_local_contexts(context: str) -> None:
    result = collect_with(f"--kube-context={context}")
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------
# The cluster itself.


def test_version_reports_the_stamped_release(k8s: KubeCluster) -> None:
    server = client.VersionApi(k8s.api_client).get_code()
    kubectl = json.loads(k8s.kubectl_run("version", "--output=json").stdout)
    helm = k8s.helm_run("version", "--template={{.Version}}").stdout.strip()

    kubernetes_pin = pinned_version("kubernetes", "k8s.io/kubernetes")
    assert kubectl["clientVersion"]["gitVersion"] == kubernetes_pin
    assert kubectl["serverVersion"]["gitVersion"] == server.git_version
    assert helm == pinned_version("helm", "helm.sh/helm/v3")
    if k8s.context == CONTEXT_NAME:
        assert (server.git_version, server.major, server.minor) == (
            kubernetes_pin,
            "1",
            kubernetes_pin.split(".")[1],
        )
    else:
        assert server.major == "1"
        assert server.git_version != "v0.0.0"


@pytest.fixture
def widget_crd(k8s: KubeCluster) -> Iterator[tuple[str, str]]:
    """A CRD with a structural schema, an OpenAPI bound and a CEL rule; yields (group, plural)."""
    group = f"t{secrets.token_hex(4)}.e2e.algoedge.dev"
    plural = "widgets"
    spec_schema = {
        "type": "object",
        "required": ["replicas"],
        "properties": {
            "replicas": {"type": "integer", "minimum": 1},
            "size": {"type": "string", "enum": ["small", "large"]},
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.size != 'large' || self.replicas <= 3",
                "message": "large widgets run at most 3 replicas",
            }
        ],
    }
    crd = client.V1CustomResourceDefinition.from_dict(
        {
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {"spec": spec_schema},
                            }
                        },
                    }
                ],
            },
        }
    )
    assert crd is not None
    k8s.apiext.create_custom_resource_definition(crd)

    def established() -> bool:
        status = k8s.apiext.read_custom_resource_definition(f"{plural}.{group}").status
        conditions = (status.conditions if status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_until(f"CRD {plural}.{group} Established", established)
    yield group, plural
    k8s.apiext.delete_custom_resource_definition(f"{plural}.{group}")


def test_crd_schema_is_enforced(
    k8s: KubeCluster, namespace: str, widget_crd: tuple[str, str]
) -> None:
    group, plural = widget_crd

    def widget(name: str, spec: dict[str, Any]) -> dict[str, object]:
        return {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }

    def create(body: dict[str, object]) -> dict[str, object]:
        # The CRD's discovery may lag Established by a moment; 404 means "not served yet".
        def attempt() -> dict[str, object] | None:
            try:
                created = k8s.custom.create_namespaced_custom_object(
                    group, "v1", namespace, plural, body
                )
            except client.ApiException as error:
                if error.status == 404:
                    return None
                raise
            assert isinstance(created, dict)
            return created

        return wait_until(f"{plural}.{group} served", attempt, timeout=30)

    created = create(widget("good", {"replicas": 2, "size": "large", "colour": "red"}))
    # Structural schemas prune unknown fields instead of storing them.
    assert created["spec"] == {"replicas": 2, "size": "large"}

    rejections: dict[str, tuple[dict[str, Any], str]] = {
        "zero": ({"replicas": 0}, "should be greater than or equal to 1"),
        "huge": ({"replicas": 4, "size": "huge"}, 'supported values: "small", "large"'),
        "crowded": ({"replicas": 4, "size": "large"}, "large widgets run at most 3 replicas"),
    }
    for name, (spec, message) in rejections.items():
        with pytest.raises(client.ApiException) as rejected:
            create(widget(name, spec))
        assert rejected.value.status == 422, rejected.value.body
        assert message in json.loads(rejected.value.body or "{}")["message"]


def test_deployment_becomes_ready_on_the_fake_node(k8s: KubeCluster, namespace: str) -> None:
    labels = {"app": "ready-check"}
    k8s.apps.create_namespaced_deployment(
        namespace, deployment("ready-check", replicas=2, labels=labels)
    )

    wait_until("2 ready replicas", lambda: ready_replicas(k8s, "ready-check", namespace) == 2)

    replica_sets = k8s.apps.list_namespaced_replica_set(namespace, label_selector="app=ready-check")
    assert [owners(rs.metadata) for rs in replica_sets.items] == [["ready-check"]]
    replica_set = replica_sets.items[0].metadata
    assert replica_set is not None
    pods = k8s.core.list_namespaced_pod(namespace, label_selector="app=ready-check").items
    assert [owners(pod.metadata) for pod in pods] == [[replica_set.name]] * 2
    assert pod_phases(k8s, namespace, "app=ready-check") == ["Running"] * 2
    if k8s.context == CONTEXT_NAME:
        assert [pod.spec.node_name for pod in pods if pod.spec] == [FAKE_NODE_NAME] * 2


def test_deleting_an_owner_collects_its_children(k8s: KubeCluster, namespace: str) -> None:
    owner = k8s.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    assert owner.metadata is not None
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    k8s.core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="child", owner_references=[reference])
        ),
    )
    k8s.core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="child", owner_references=[reference])),
    )
    unrelated = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="unrelated"))
    k8s.core.create_namespaced_config_map(namespace, unrelated)

    k8s.core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    wait_until(
        "child ConfigMap collected",
        gone(lambda: k8s.core.read_namespaced_config_map("child", namespace)),
    )
    wait_until(
        "child Secret collected",
        gone(lambda: k8s.core.read_namespaced_secret("child", namespace)),
    )
    assert k8s.core.read_namespaced_config_map("unrelated", namespace).data is None  # still there


def test_namespace_deletion_completes(k8s: KubeCluster, namespace: str) -> None:
    # Running pods make this real: they must be terminated (by kwok) before the namespace goes.
    labels = {"app": "doomed"}
    k8s.apps.create_namespaced_deployment(
        namespace, deployment("doomed", replicas=2, labels=labels)
    )
    k8s.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="doomed"))
    )

    wait_until(
        "2 running pods", lambda: pod_phases(k8s, namespace, "app=doomed") == ["Running"] * 2
    )

    k8s.core.delete_namespace(namespace)

    wait_until(f"namespace {namespace} deleted", gone(lambda: k8s.core.read_namespace(namespace)))


def test_a_claim_is_bound_by_the_volume_provisioner(k8s: KubeCluster, namespace: str) -> None:
    if k8s.context != "algoedge-local":
        pytest.skip("the volume-provisioner is the local control plane's (kind binds on first use)")
    claim = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="data"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
    )
    k8s.core.create_namespaced_persistent_volume_claim(namespace, claim)

    def bound() -> bool:
        found = k8s.core.read_namespaced_persistent_volume_claim("data", namespace)
        return found.status is not None and found.status.phase == "Bound"

    wait_until("the claim to be Bound", bound)


def test_kubectl_apply_creates_and_updates(k8s: KubeCluster, namespace: str) -> None:
    def manifest(greeting: str) -> str:
        return f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: greeting
data:
  greeting: {greeting}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: {IMAGE}
"""

    created = k8s.kubectl_run("apply", f"--namespace={namespace}", "-f", "-", stdin=manifest("hi"))
    assert "configmap/greeting created" in created.stdout
    assert "deployment.apps/web created" in created.stdout
    k8s.kubectl_run(
        "rollout", "status", f"--namespace={namespace}", "deployment/web", "--timeout=120s"
    )

    updated = k8s.kubectl_run("apply", f"--namespace={namespace}", "-f", "-", stdin=manifest("yo"))
    assert "configmap/greeting configured" in updated.stdout
    assert "deployment.apps/web unchanged" in updated.stdout
    assert k8s.core.read_namespaced_config_map("greeting", namespace).data == {"greeting": "yo"}


def test_helm_install_and_uninstall_a_chart(
    k8s: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    # kubeVersion makes helm check the server's stamped version.
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\nreplicas: 2\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "templates" / "deployment.yaml").write_text(
        f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{{{ .Release.Name }}}}-web
spec:
  replicas: {{{{ .Values.replicas }}}}
  selector:
    matchLabels: {{app: {{{{ .Release.Name }}}}-web}}
  template:
    metadata:
      labels: {{app: {{{{ .Release.Name }}}}-web}}
    spec:
      containers:
      - name: web
        image: {IMAGE}
"""
    )

    k8s.helm_run(
        "install", "demo", str(chart), f"--namespace={namespace}",
        "--set=greeting=bonjour", "--wait", "--timeout=2m",
    )  # fmt: skip

    releases = json.loads(k8s.helm_run("list", f"--namespace={namespace}", "-o=json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
    greeting = k8s.core.read_namespaced_config_map("demo-greeting", namespace)
    assert greeting.data == {"greeting": "bonjour"}
    assert ready_replicas(k8s, "demo-web", namespace) == 2  # --wait returns once pods are ready

    k8s.helm_run("uninstall", "demo", f"--namespace={namespace}", "--wait", "--timeout=2m")
    wait_until(
        "helm-managed ConfigMap removed",
        gone(lambda: k8s.core.read_namespaced_config_map("demo-greeting", namespace)),
    )
