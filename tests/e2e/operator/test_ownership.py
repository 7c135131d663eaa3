"""What the operator refuses to take, to run or to read: objects of its children's names that are
not the tenant's, images outside its allowlist, Secrets not labelled for the tenant."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.conftest import Operator
from tests.e2e.operator.support import (
    condition_is,
    create_secret,
    create_tenant,
    create_tenant_secrets,
    events,
    exists,
    get,
    patch_tenant,
    path,
    raw,
    read_tenant,
    wait_until,
)

ADOPT = "algoedge.io/adopt"


def another_teams_deployment(name: str, **annotations: str) -> dict[str, Any]:
    labels = {"app": "ledger"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "ledger", "image": "example.org/ledger:3"}]},
            },
        },
    }


def test_an_existing_deployment_of_another_team_is_left_untouched(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    deployments = path(namespace, "apps/v1", "deployments")
    raw(k8s, "POST", deployments, another_teams_deployment("acme-api"))
    before = get(k8s, namespace, "apps/v1", "deployments", "acme-api")
    create_tenant_secrets(k8s, namespace)
    create_tenant(k8s, namespace, "acme")
    degraded = wait_until(
        "Degraded with reason NameConflict",
        condition_is(k8s, namespace, "acme", "Degraded", "True", "NameConflict"),
        timeout=60,
    )
    assert "Deployment acme-api" in degraded["message"]
    assert f"{ADOPT}=acme" in degraded["message"]
    # Every other child is written meanwhile.
    wait_until(
        "the tenant's other Deployments",
        lambda: get(k8s, namespace, "apps/v1", "deployments", "acme-worker"),
        timeout=60,
    )
    after = get(k8s, namespace, "apps/v1", "deployments", "acme-api")
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after["metadata"].get("ownerReferences") is None
    assert "app.kubernetes.io/managed-by" not in after["metadata"]["labels"]
    (event,) = events(k8s, namespace, "NameConflict")
    assert event["type"] == "Warning"
    assert "Deployment acme-api" in event["message"]
    assert "api" not in read_tenant(k8s, namespace, "acme")["status"].get("components", {})


def test_an_existing_object_annotated_for_the_tenant_is_adopted(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    deployments = path(namespace, "apps/v1", "deployments")
    raw(k8s, "POST", deployments, another_teams_deployment("acme-api", **{ADOPT: "acme"}))
    create_tenant_secrets(k8s, namespace)
    uid = create_tenant(k8s, namespace, "acme")["metadata"]["uid"]

    def adopted() -> bool:
        live = get(k8s, namespace, "apps/v1", "deployments", "acme-api")
        owners = live["metadata"].get("ownerReferences") or []
        return any(o["uid"] == uid and o.get("controller") for o in owners)

    wait_until("the tenant to own acme-api", adopted, timeout=60)
    assert not events(k8s, namespace, "NameConflict")


@pytest.fixture
def image_allowlist(operator_env: dict[str, str]) -> None:
    # The test tenants' image is under it; their bridge image (algoedge-bridge) is not.
    operator_env["ALGOEDGE_OPERATOR_IMAGE_ALLOWLIST"] = "registry.example.com/algoedge"


def test_a_tenant_whose_image_is_not_allowed_is_not_rolled_out(
    k8s: KubeCluster, namespace: str, image_allowlist: None, operator: Operator
) -> None:
    create_tenant_secrets(k8s, namespace)
    create_tenant(k8s, namespace, "acme")
    degraded = wait_until(
        "Degraded with reason ImageNotAllowed",
        condition_is(k8s, namespace, "acme", "Degraded", "True", "ImageNotAllowed"),
        timeout=60,
    )
    assert "spec.bridgeImage registry.example.com/algoedge-bridge:1.0.0" in degraded["message"]
    assert "spec.image " not in degraded["message"], "the API image is allowed"
    deployments = raw(k8s, "GET", path(namespace, "apps/v1", "deployments"))["items"]
    assert deployments == []
    assert not exists(lambda: get(k8s, namespace, "v1", "configmaps", "acme-config"))
    (event,) = events(k8s, namespace, "ImageNotAllowed")
    assert event["type"] == "Warning"
    patch_tenant(
        k8s, namespace, "acme", {"spec": {"bridgeImage": "registry.example.com/algoedge/bridge:1"}}
    )
    wait_until(
        "the tenant rolled out once its images are allowed",
        lambda: exists(lambda: get(k8s, namespace, "apps/v1", "deployments", "acme-api")),
        timeout=60,
    )


def test_a_referenced_secret_not_labelled_for_the_tenant_is_not_used(
    k8s: KubeCluster, namespace: str, operator: Operator
) -> None:
    create_tenant_secrets(k8s, namespace)
    create_secret(
        k8s, namespace, "shared-redis", for_tenant=None, url="redis://:pw@r.example:6379/0"
    )
    create_tenant(
        k8s,
        namespace,
        "acme",
        redis={"mode": "external", "external": {"secretRef": {"name": "shared-redis"}}},
    )
    degraded = wait_until(
        "Degraded with reason SecretNotLabelled",
        condition_is(k8s, namespace, "acme", "Degraded", "True", "SecretNotLabelled"),
        timeout=60,
    )
    assert "shared-redis (spec.redis.external.secretRef)" in degraded["message"]
    assert "label secret shared-redis algoedge.io/tenant=acme" in degraded["message"]
    assert raw(k8s, "GET", path(namespace, "apps/v1", "deployments"))["items"] == []
    (event,) = events(k8s, namespace, "SecretNotLabelled")
    assert event["type"] == "Warning"
    label = {"metadata": {"labels": {"algoedge.io/tenant": "acme"}}}
    raw(
        k8s,
        "PATCH",
        path(namespace, "v1", "secrets", "shared-redis"),
        label,
        content_type="application/merge-patch+json",
    )
    wait_until(
        "the tenant rolled out once the Secret is labelled",
        lambda: exists(lambda: get(k8s, namespace, "apps/v1", "deployments", "acme-api")),
        timeout=60,
    )
