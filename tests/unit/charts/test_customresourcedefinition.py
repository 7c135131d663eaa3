"""charts/algoedge-crds/templates/customresourcedefinition.yaml: the CRD of crds/, with Helm's metadata."""

from __future__ import annotations

import copy

import yaml

from tests.unit.charts.support import CRD_FILE, CRDS_CHART, Helm, Manifest, kinds, only

LINKED_FILE = CRDS_CHART / "files" / CRD_FILE.name
#: What the chart adds to the file's metadata, and nothing else.
ADDED_LABELS = {
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
}
KEEP = {"helm.sh/resource-policy": "keep"}


def render(helm: Helm, **kwargs: object) -> Manifest:
    manifests = helm.render(CRDS_CHART, **kwargs)  # type: ignore[arg-type]
    assert kinds(manifests) == ["CustomResourceDefinition"]
    return only(manifests, "CustomResourceDefinition")


def without_helm_metadata(crd: Manifest) -> Manifest:
    crd = copy.deepcopy(crd)
    metadata = crd["metadata"]
    metadata.pop("annotations", None)
    for label in ADDED_LABELS:
        metadata.get("labels", {}).pop(label, None)
    return crd


def test_should_read_the_one_crd_file_of_the_repository() -> None:
    # A symlink, not a copy: crds/ stays the only place the CRD is edited.
    assert LINKED_FILE.is_symlink()
    assert LINKED_FILE.resolve() == CRD_FILE.resolve()


def test_should_render_exactly_the_crd_of_crds_directory(helm: Helm) -> None:
    rendered = render(helm)
    source = yaml.safe_load(CRD_FILE.read_text())
    assert without_helm_metadata(rendered) == source
    # The file's own labels are kept as they are; the chart only adds its four.
    added = rendered["metadata"]["labels"].keys() - source["metadata"]["labels"].keys()
    assert added == ADDED_LABELS


def test_should_keep_the_crd_and_so_every_tenant_on_uninstall(helm: Helm) -> None:
    assert render(helm)["metadata"]["annotations"] == KEEP


def test_should_let_uninstall_delete_the_crd_when_asked(helm: Helm) -> None:
    assert "annotations" not in render(helm, set_values={"keep": "false"})["metadata"]
