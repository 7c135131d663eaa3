"""Watched-namespaces mode under the chart's own RBAC: the operator runs as the ServiceAccount the
chart binds with namespaced Roles only (a real token, not admin), reconciles the tenant of the
watched namespace and leaves the one of another namespace alone."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from algoedge_operator.settings import kopf_scope_args
from kopf.testing import KopfRunner
from kubernetes import client

from devtools.controlplane.pytest_plugin import NAMESPACE_LABEL, KubeCluster
from tests.e2e.operator.conftest import REPO
from tests.e2e.operator.support import (
    create_tenant,
    create_tenant_secrets,
    exists,
    get,
    raw,
    read_tenant,
    wait_ready,
)

OPERATOR_CHART = REPO / "charts" / "algoedge-operator"
#: The chart's RBAC objects; the Deployment is not applied (the operator runs in this process).
RBAC_TEMPLATES = ("serviceaccount.yaml", "role.yaml", "rolebinding.yaml")


@pytest.fixture
def elsewhere(k8s: KubeCluster) -> Iterator[str]:
    """A second namespace, not watched: the operator's own, and another team's tenant's."""
    name = f"e2e-elsewhere-{secrets.token_hex(3)}"
    k8s.core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={NAMESPACE_LABEL: "true"})
        )
    )
    yield name
    k8s.core.delete_namespace(name, propagation_policy="Background")


def install_rbac(k8s: KubeCluster, *, release_namespace: str, watched: str) -> str:
    """`helm template` of the chart's RBAC with watchNamespaces, applied; the ServiceAccount's
    name."""
    args = ["template", "e2e-watch", str(OPERATOR_CHART), "--namespace", release_namespace]
    args += ["--set", f"watchNamespaces={{{watched}}}"]
    for template in RBAC_TEMPLATES:
        args += ["--show-only", f"templates/{template}"]
    rendered = k8s.helm_run(*args).stdout
    kinds = [doc["kind"] for doc in yaml.safe_load_all(rendered) if doc]
    assert sorted(kinds) == ["Role", "RoleBinding", "ServiceAccount"]
    k8s.kubectl_run("apply", "--filename=-", stdin=rendered)
    account = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceAccount")
    return str(account["metadata"]["name"])


def service_account_kubeconfig(
    k8s: KubeCluster, *, namespace: str, account: str, target: Path
) -> Path:
    """A kubeconfig holding a bound token of the ServiceAccount (TokenRequest), for the same
    API server as the admin's."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    answer = raw(
        k8s, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", request
    )
    admin = yaml.safe_load(k8s.kubeconfig.read_text())
    cluster = next(
        c for c in admin["clusters"] if c["name"] == admin["contexts"][0]["context"]["cluster"]
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": answer["status"]["token"]}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": "sa",
    }
    target.write_text(json.dumps(config))
    target.chmod(0o600)
    return target


def can_i(k8s: KubeCluster, subject: str, *args: str) -> bool:
    """`kubectl auth can-i` as ``subject`` (impersonated by the admin), asked of the API server."""
    result = k8s.kubectl_run("auth", "can-i", *args, f"--as={subject}", check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_the_chart_roles_suffice_to_serve_the_watched_namespace_and_nothing_else(
    k8s: KubeCluster,
    namespace: str,
    elsewhere: str,
    crd: None,
    operator_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    account = install_rbac(k8s, release_namespace=elsewhere, watched=namespace)
    subject = f"system:serviceaccount:{elsewhere}:{account}"
    # What the API server itself says the chart's Roles grant.
    assert can_i(k8s, subject, "list", "algoedgetenants.algoedge.io", f"--namespace={namespace}")
    assert can_i(k8s, subject, "create", "deployments.apps", f"--namespace={namespace}")
    assert can_i(k8s, subject, "get", "secrets", f"--namespace={namespace}")
    assert not can_i(k8s, subject, "get", "secrets", f"--namespace={elsewhere}")
    assert not can_i(k8s, subject, "list", "algoedgetenants.algoedge.io", "--all-namespaces")
    assert not can_i(k8s, subject, "list", "secrets", "--all-namespaces")
    assert not can_i(k8s, subject, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(k8s, subject, "list", "namespaces")

    for where in (namespace, elsewhere):
        create_tenant_secrets(k8s, where)
        create_tenant(k8s, where, "acme")

    kubeconfig = service_account_kubeconfig(
        k8s, namespace=elsewhere, account=account, target=tmp_path / "operator.kubeconfig"
    )
    env = {**operator_env, "KUBECONFIG": str(kubeconfig), "ALGOEDGE_OPERATOR_NAMESPACES": namespace}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runner = KopfRunner(
        ["run", *kopf_scope_args((namespace,)), "--standalone", "-m", "algoedge_operator"],
        timeout=60,
    )
    with runner:
        wait_ready(k8s, namespace)
        # Both tenants existed before the operator started, and the watched one has been
        # reconciled to Ready since: had the other been served, it would have children by now.
        ignored = read_tenant(k8s, elsewhere, "acme")
        assert "status" not in ignored or not ignored["status"]
        assert not exists(lambda: get(k8s, elsewhere, "v1", "configmaps", "acme-config"))
        assert not exists(lambda: get(k8s, elsewhere, "apps/v1", "deployments", "acme-api"))
    assert runner.exception is None, runner.exception
    assert runner.exit_code == 0, runner.output
    assert "Traceback" not in runner.output, runner.output
    # Not one request was refused: the namespaced Roles grant everything the operator does.
    for refused in ("Forbidden", "Not enough permissions", " 403 "):
        assert refused not in runner.output, runner.output
    assert re.search(rf"namespaces {re.escape(namespace)}\b", runner.output), runner.output
