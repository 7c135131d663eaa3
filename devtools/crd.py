"""Write what the AlgoEdgeTenant CRD's descriptions and the tenant chart's schema derive from.

The CRD file (crds/algoedge.io_algoedgetenants.yaml) holds the structure: types, bounds,
patterns, defaults, CEL rules, printer columns. The descriptions `kubectl explain` shows come
from one place each: spec fields from ``Field(description=...)`` on ``model.SpecFields`` and its
nested models (the CRD's default and the capacity profile's sizes are added to the text from the
CRD and profile.py, never retyped), status fields and printer columns from
``status.STATUS_DESCRIPTIONS`` / ``PRINTER_COLUMN_DESCRIPTIONS``. The tenant chart's
values.schema.json takes its ``spec`` and ``expectedUsers`` from the CRD's spec schema.

    python -m devtools.crd            # rewrite both files (make crd)
    python -m devtools.crd --check    # exit 1 when either file is not what this would write

A field of the CRD without a description in its source is listed and the exit code is 1 (the
files are still written, keeping whatever text the field had), so a new field cannot land
undescribed: tests/unit/operator/test_crd_descriptions.py runs the same functions.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from algoedge_operator.model import SPEC_DESCRIPTION, TENANT_DESCRIPTION, SpecFields
from algoedge_operator.status import PRINTER_COLUMN_DESCRIPTIONS, STATUS_DESCRIPTIONS
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "algoedge.io_algoedgetenants.yaml"
TENANT_SCHEMA_FILE = REPO / "charts" / "algoedge-tenant" / "values.schema.json"

#: The CRD file's header; the generator writes it, so it is said here.
HEADER = """\
# AlgoEdgeTenant: one complete AlgoEdge deployment, reconciled by algoedge-operator.
# Edit the structure here (types, bounds, defaults, CEL rules, printer columns); every
# `description` is written by `make crd` (python -m devtools.crd) from
# operator/algoedge_operator/model.py (spec) and status.py (status, printer columns). Leaf
# defaults equal algoedge_operator.model.SpecFields' (a unit test keeps them so); sizes without a
# default come from the capacity profile chosen by spec.expectedUsers.
"""

#: Kubernetes' own wording for the fields every object has.
STANDARD_DESCRIPTIONS = {
    "apiVersion": (
        "APIVersion defines the versioned schema of this representation of an object: "
        "algoedge.io/v1alpha1."
    ),
    "kind": "Kind is the REST resource this object represents: AlgoEdgeTenant.",
}
#: Fields the API server forbids a description on (it describes ObjectMeta itself).
UNDESCRIBED = frozenset({"metadata"})

#: Fields the tenant chart sets from its own values; its ``spec`` value may not hold them.
CHART_OWNED = (
    ("image",),
    ("bridgeImage",),
    ("expectedUsers",),
    ("database", "secretRef"),
    ("bridge", "metaapi", "tokenSecretRef"),
)

Schema = dict[str, Any]


@dataclass
class Described:
    """The CRD with its descriptions, and the fields no source describes."""

    crd: Schema
    missing: list[str] = field(default_factory=list)


# -- where descriptions come from --------------------------------------------------------------


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (also through ``X | None``), None for a leaf."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def model_descriptions(model: type[BaseModel], prefix: str = "") -> dict[str, str | None]:
    """Dotted CRD path -> the ``Field(description=...)`` of every field of ``model``, nested
    models included (None where a field has none)."""
    found: dict[str, str | None] = {}
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        found[path] = info.description
        nested = _submodel(info.annotation)
        if nested is not None:
            found.update(model_descriptions(nested, path + "."))
    return found


# -- the CRD ----------------------------------------------------------------------------------


def _version(crd: Schema) -> Schema:
    (version,) = crd["spec"]["versions"]
    return dict(version)


def schema_fields(node: Schema, prefix: str = "") -> Iterator[tuple[str, Schema]]:
    """Every field under ``node`` as (path, schema): ``a.b`` for properties, ``a[].b`` for items
    of a list of objects, ``a.*`` and ``a.*.b`` for values of a map of objects."""
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path, child
        yield from schema_fields(child, path + ".")
        items = child.get("items")
        if isinstance(items, dict) and "properties" in items:
            yield from schema_fields(items, path + "[].")
        values = child.get("additionalProperties")
        # A map of objects (status.components) describes its values; a map of strings (labels)
        # has nothing more to say than the map's own description.
        if isinstance(values, dict) and "properties" in values:
            yield f"{path}.*", values
            yield from schema_fields(values, path + ".*.")


def _format_default(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _with_default(text: str, node: Schema) -> str:
    default = node.get("default")
    if default is None or default == {}:
        return text
    return f"{text} Default: {_format_default(default)}."


def _set(node: Schema, text: str | None, path: str, missing: list[str]) -> None:
    if text:
        node["description"] = text
    else:
        missing.append(path)


def describe_crd(
    crd: Schema,
    *,
    spec: Mapping[str, str | None],
    status: Mapping[str, str],
    columns: Mapping[str, str],
) -> Described:
    """The CRD with every description set from its source (pure: ``crd`` is not changed).
    Object-valued defaults (``{}``) are not mentioned; every other default is appended."""
    # A JSON round trip, not deepcopy: YAML anchors (`&resources`) load as one shared object,
    # and each place it is used gets its own description.
    described = Described(json.loads(json.dumps(crd)))
    missing = described.missing
    version = _version(described.crd)
    root = version["schema"]["openAPIV3Schema"]
    root["description"] = TENANT_DESCRIPTION
    for name in UNDESCRIBED:
        root["properties"][name].pop("description", None)
    for name, standard in STANDARD_DESCRIPTIONS.items():
        _set(root["properties"][name], standard, name, missing)
    spec_root = root["properties"]["spec"]
    spec_root["description"] = SPEC_DESCRIPTION
    for path, node in schema_fields(spec_root):
        text = spec.get(path)
        _set(node, _with_default(text, node) if text else None, f"spec.{path}", missing)
    status_root = root["properties"].get("status")
    if status_root is not None:
        _set(status_root, status.get(""), "status", missing)
        for path, node in schema_fields(status_root):
            _set(node, status.get(path), f"status.{path}", missing)
    for column in version.get("additionalPrinterColumns", []):
        _set(column, columns.get(column["name"]), f"printer column {column['name']}", missing)
    return described


def _kept_text(crd: Schema, where: str) -> str | None:
    """The description the CRD has at ``where`` (a path as :attr:`Described.missing` names it)."""
    version = _version(crd)
    if where.startswith("printer column "):
        name = where.removeprefix("printer column ")
        columns = [c for c in version.get("additionalPrinterColumns", []) if c["name"] == name]
        return str(columns[0].get("description") or "") or None if columns else None
    root = version["schema"]["openAPIV3Schema"]
    section, _, rest = where.partition(".")
    nodes = (
        dict(schema_fields(root["properties"][section])) if section in root["properties"] else {}
    )
    node = root["properties"].get(section, {}) if not rest else nodes.get(rest, {})
    return str(node.get("description") or "") or None


def describe_tenant_crd(crd: Schema) -> Described:
    """:func:`describe_crd` with the project's sources."""
    return describe_crd(
        crd,
        spec=model_descriptions(SpecFields),
        status=STATUS_DESCRIPTIONS,
        columns=PRINTER_COLUMN_DESCRIPTIONS,
    )


class _NoAliases(yaml.SafeDumper):
    """Writes each node in full: an anchor would make two fields share one description."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd(crd: Schema) -> str:
    """The CRD file's text: the header, then the CRD in block style, keys in their order."""
    body = yaml.dump(crd, Dumper=_NoAliases, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


# -- the tenant chart's values schema ----------------------------------------------------------


def _as_json_schema(node: Schema) -> Schema:
    """A CRD schema node as JSON schema for Helm: the same types, bounds, patterns and enums;
    objects closed to unknown keys; Kubernetes' extensions (CEL rules among them) dropped, as JSON
    schema has no equivalent; defaults dropped, as the operator applies them."""
    out: Schema = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "default":
            continue
        if key == "properties":
            out[key] = {name: _as_json_schema(child) for name, child in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _as_json_schema(value)
        else:
            out[key] = copy.deepcopy(value)
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
    return out


def _drop(node: Schema, path: Sequence[str]) -> None:
    parent = node
    for name in path[:-1]:
        parent = parent["properties"][name]
    parent["properties"].pop(path[-1])
    required = [r for r in parent.get("required", []) if r != path[-1]]
    if required:
        parent["required"] = required
    else:
        parent.pop("required", None)


def tenant_values_schema(crd: Schema, schema: Schema) -> Schema:
    """The tenant chart's values schema with ``spec`` (the CRD's spec less what the chart sets)
    and ``expectedUsers`` (the CRD's) taken from the CRD (pure)."""
    spec = _version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    values_spec = _as_json_schema(spec)
    expected_users = values_spec["properties"]["expectedUsers"]
    for path in CHART_OWNED:
        _drop(values_spec, path)
    # What the CRD requires of spec (image, bridgeImage, database) the chart always sets.
    values_spec.pop("required", None)
    values_spec["description"] = (
        "Every other field of the AlgoEdgeTenant's spec (kubectl explain algoedgetenant.spec); "
        "the CRD's CEL rules are checked by the API server at install."
    )
    result = copy.deepcopy(schema)
    result["properties"]["spec"] = values_spec
    result["properties"]["expectedUsers"] = expected_users
    return result


def render_json(schema: Schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# -- I/O ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.crd", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    described = describe_tenant_crd(yaml.safe_load(CRD_FILE.read_text()))
    outputs = {
        CRD_FILE: render_crd(described.crd),
        TENANT_SCHEMA_FILE: render_json(
            tenant_values_schema(described.crd, json.loads(TENANT_SCHEMA_FILE.read_text()))
        ),
    }
    status = 0
    for field_path in described.missing:
        # Text the file already has (hand-written before the field got a source) is kept; say it,
        # so it can be moved into the source as it is.
        kept = _kept_text(described.crd, field_path)
        said = f" (the CRD file says: {kept!r})" if kept else ""
        print(f"crd: {field_path} has no description in its source{said}", file=sys.stderr)
        status = 1
    if described.missing:
        print(
            "crd: spec fields take theirs from Field(description=...) in "
            "operator/algoedge_operator/model.py, status fields and printer columns from "
            "STATUS_DESCRIPTIONS / PRINTER_COLUMN_DESCRIPTIONS in status.py",
            file=sys.stderr,
        )
    for path, text in outputs.items():
        if path.read_text() == text:
            continue
        where = path.relative_to(REPO)
        if args.check:
            print(f"crd: {where} is out of date: run `make crd`", file=sys.stderr)
            status = 1
        else:
            path.write_text(text)
            print(f"crd: wrote {where}")
    return status


if __name__ == "__main__":
    sys.exit(main())
