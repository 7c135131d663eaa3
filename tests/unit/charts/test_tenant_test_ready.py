"""charts/algoedge-tenant/templates/tests/test-ready.yaml: `helm test` waits for the tenant's Ready
condition with the least rights. On the local control plane the pod never runs (kwok plays the
kubelet); tests/e2e/operator/test_tenant_chart.py runs its command with its ServiceAccount's rights."""

from __future__ import annotations

from tests.unit.charts.support import TENANT_CHART, TENANT_VALUES, Helm, Manifest, kinds, only

HOOK = {
    "helm.sh/hook": "test",
    "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
}


def render(helm: Helm, **values: object) -> list[Manifest]:
    return helm.render(
        TENANT_CHART,
        values={**TENANT_VALUES, **values},
        release="acme",
        namespace="trading",
        show_only="tests/test-ready.yaml",
    )


def test_should_make_every_object_a_test_hook(helm: Helm) -> None:
    manifests = render(helm)
    assert kinds(manifests) == ["Pod", "Role", "RoleBinding", "ServiceAccount"]
    for manifest in manifests:
        assert HOOK.items() <= manifest["metadata"]["annotations"].items(), manifest["kind"]
    # RBAC first, so the pod's first request is allowed.
    weights = {
        m["kind"]: m["metadata"]["annotations"].get("helm.sh/hook-weight", "0") for m in manifests
    }
    assert int(weights["Role"]) < int(weights["Pod"])


def test_should_wait_for_the_tenants_ready_condition(helm: Helm) -> None:
    pod = only(render(helm, test={"timeout": "10m"}), "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["/bin/kubectl"]
    assert container["args"] == [
        "wait",
        "--for=condition=Ready",
        "algoedgetenant.algoedge.io/acme",
        "--namespace=trading",
        "--timeout=10m",
    ]
    assert container["image"] == "registry.k8s.io/kubectl:v1.31.0"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == "acme-test-ready"


def test_should_let_the_pod_read_this_tenant_only(helm: Helm) -> None:
    manifests = render(helm)
    role = only(manifests, "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["algoedge.io"],
            "resources": ["algoedgetenants"],
            "resourceNames": ["acme"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    binding = only(manifests, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "acme-test-ready", "namespace": "trading"}
    ]


def test_should_meet_the_restricted_pod_security_standard(helm: Helm) -> None:
    pod = only(render(helm), "Pod")
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["spec"]["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True


def test_should_refuse_a_timeout_kubectl_would_not_read(helm: Helm) -> None:
    error = helm.render_error(TENANT_CHART, values={**TENANT_VALUES, "test": {"timeout": "5 min"}})
    assert "at '/test/timeout'" in error
