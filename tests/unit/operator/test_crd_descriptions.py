"""`kubectl explain algoedgetenant…` answers: every field of the CRD carries a description written
by devtools/crd.py from the model (spec) and status.py (status, printer columns)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from algoedge_operator.model import SpecFields
from algoedge_operator.profile import PROFILES
from algoedge_operator.status import PRINTER_COLUMN_DESCRIPTIONS, STATUS_DESCRIPTIONS

from devtools.crd import (
    UNDESCRIBED,
    describe_crd,
    describe_tenant_crd,
    main,
    model_descriptions,
    render_crd,
    schema_fields,
)

CRD_FILE = Path(__file__).resolve().parents[3] / "crds" / "algoedge.io_algoedgetenants.yaml"


def crd() -> dict[str, Any]:
    return dict(yaml.safe_load(CRD_FILE.read_text()))


def openapi(manifest: dict[str, Any]) -> dict[str, Any]:
    (version,) = manifest["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def test_should_give_every_field_and_column_a_description_from_its_source() -> None:
    assert describe_tenant_crd(crd()).missing == []


def test_should_describe_every_field_in_the_crd_file() -> None:
    manifest = crd()
    root = openapi(manifest)
    undescribed = [
        path
        for path, node in schema_fields(root)
        if not node.get("description") and path not in UNDESCRIBED
    ]
    (version,) = manifest["spec"]["versions"]
    undescribed += [
        f"column {c['name']}"
        for c in version["additionalPrinterColumns"]
        if not c.get("description")
    ]
    assert not undescribed, f"run `make crd`; fields without a description: {undescribed}"
    assert root["description"]
    # The API server refuses a CRD that describes metadata (found on the local control plane).
    assert "description" not in root["properties"]["metadata"]


def test_should_hold_the_crd_file_as_make_crd_writes_it() -> None:
    assert CRD_FILE.read_text() == render_crd(describe_tenant_crd(crd()).crd), (
        "crds/algoedge.io_algoedgetenants.yaml is out of date with the model: run `make crd`"
    )


def test_should_describe_every_model_field() -> None:
    undescribed = [path for path, text in model_descriptions(SpecFields).items() if not text]
    assert not undescribed


def test_should_say_each_default_and_each_profiles_size() -> None:
    spec = openapi(crd())["properties"]["spec"]["properties"]
    target = spec["api"]["properties"]["targetCPUUtilizationPercentage"]["description"]
    assert target.endswith("Default: 70.")
    minimum = spec["api"]["properties"]["minReplicas"]["description"]
    sizes = ", ".join(f"{p.name} {p.api_min_replicas}" for p in PROFILES)
    assert f"({sizes})" in minimum
    queues = spec["workers"]["properties"]["queues"]["description"]
    assert queues.endswith("Default: [default, reports, emails].")


def test_should_describe_each_use_of_a_shared_schema_on_its_own() -> None:
    # api, workers and bridge share one YAML anchor for resources, but not their defaults.
    spec = openapi(crd())["properties"]["spec"]["properties"]
    texts = {
        spec[c]["properties"]["resources"]["description"] for c in ("api", "workers", "bridge")
    }
    assert len(texts) == 3


def test_should_list_a_field_without_a_source_and_keep_its_text() -> None:
    manifest = crd()
    spec = openapi(manifest)["properties"]["spec"]
    # Fields a later change adds to the CRD before their source describes them.
    spec["properties"]["futureField"] = {
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean", "description": "hand-written"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    openapi(manifest)["properties"]["status"]["properties"]["futureStatus"] = {"type": "object"}
    (version,) = manifest["spec"]["versions"]
    version["additionalPrinterColumns"].append(
        {"name": "Future", "type": "string", "jsonPath": ".x"}
    )
    before = copy.deepcopy(manifest)
    described = describe_crd(
        manifest,
        spec=model_descriptions(SpecFields),
        status=STATUS_DESCRIPTIONS,
        columns=PRINTER_COLUMN_DESCRIPTIONS,
    )
    # Only the new fields count: this test is about the mechanism, the first one about the file.
    baseline = set(describe_tenant_crd(crd()).missing)
    assert [path for path in described.missing if path not in baseline] == [
        "spec.futureField",
        "spec.futureField.enabled",
        "spec.futureField.labels",
        "status.futureStatus",
        "printer column Future",
    ]
    future = openapi(described.crd)["properties"]["spec"]["properties"]["futureField"]
    assert future["properties"]["enabled"]["description"] == "hand-written"
    assert manifest == before  # pure


def test_should_fail_the_check_when_the_file_is_stale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import devtools.crd as generator

    stale = tmp_path / "crd.yaml"
    stale.write_text(CRD_FILE.read_text().replace("Ready API pods.", "Ready API pods"))
    schema = tmp_path / "values.schema.json"
    schema.write_text(generator.TENANT_SCHEMA_FILE.read_text())
    monkeypatch.setattr(generator, "CRD_FILE", stale)
    monkeypatch.setattr(generator, "TENANT_SCHEMA_FILE", schema)
    monkeypatch.setattr(generator, "REPO", tmp_path)
    main(["--check"])
    assert "crd.yaml is out of date: run `make crd`" in capsys.readouterr().err
    main([])
    assert "Ready API pods." in stale.read_text()
    main(["--check"])
    assert "out of date" not in capsys.readouterr().err


def test_should_exit_1_naming_a_field_without_a_source_and_its_current_text(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import devtools.crd as generator

    manifest = crd()
    openapi(manifest)["properties"]["status"]["properties"]["futureStatus"] = {
        "type": "integer",
        "description": "hand-written",
    }
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(manifest))
    schema = tmp_path / "values.schema.json"
    schema.write_text(generator.TENANT_SCHEMA_FILE.read_text())
    monkeypatch.setattr(generator, "CRD_FILE", path)
    monkeypatch.setattr(generator, "TENANT_SCHEMA_FILE", schema)
    monkeypatch.setattr(generator, "REPO", tmp_path)
    assert main([]) == 1
    assert (
        "crd: status.futureStatus has no description in its source "
        "(the CRD file says: 'hand-written')"
    ) in capsys.readouterr().err
    assert "hand-written" in path.read_text()
