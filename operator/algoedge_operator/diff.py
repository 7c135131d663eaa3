"""Decide, without writing, whether a child must be applied (the key to zero writes at steady
state), and what an update that takes drifted fields back sends.

A child is applied when it is missing, when what the operator wants changed since the last
apply (a hash annotation, which also catches fields the operator stopped setting), or when a
field the operator sets has another value live (drift, e.g. ``kubectl edit``). Live objects carry
server defaults, so the comparison is "desired is contained in live", with quantities compared
by value ("0.5" equals "500m").
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from algoedge_operator.builders.common import Manifest

APPLIED_HASH_ANNOTATION = "algoedge.io/applied-hash"
QUANTITY_KEYS = frozenset({"cpu", "memory", "storage", "ephemeral-storage", "sizeLimit"})
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}


def manifest_hash(manifest: Manifest) -> str:
    return hashlib.sha256(
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:32]


def stamp(manifest: Manifest) -> Manifest:
    """A copy carrying the hash of what is applied, for the next comparison."""
    stamped = copy.deepcopy(manifest)
    annotations = stamped["metadata"].setdefault("annotations", {})
    annotations[APPLIED_HASH_ANNOTATION] = manifest_hash(manifest)
    return stamped


def quantity(text: str) -> Decimal | None:
    match = _QUANTITY.match(text)
    if match is None or match.group(2) not in _SUFFIXES:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return None


def _same_scalar(key: str, desired: Any, live: Any) -> bool:
    if key in QUANTITY_KEYS and isinstance(desired, str) and isinstance(live, str):
        wanted, actual = quantity(desired), quantity(live)
        if wanted is not None and actual is not None:
            return wanted == actual
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    return bool(desired == live)


def contains(live: Any, desired: Any, key: str = "") -> bool:
    """True when every field set in ``desired`` has the same value in ``live``."""
    if isinstance(desired, Mapping):
        if not desired:
            return live is None or isinstance(live, Mapping)
        if not isinstance(live, Mapping):
            return False
        return all(contains(live.get(k), v, k) for k, v in desired.items())
    if isinstance(desired, list):
        if not desired:
            return not live
        if not isinstance(live, list):
            return False
        if all(isinstance(item, Mapping) and "name" in item for item in desired):
            # Lists merged by name (containers, env, volumes, ports): others may add entries.
            by_name = {item.get("name"): item for item in live if isinstance(item, Mapping)}
            return all(contains(by_name.get(item["name"]), item, key) for item in desired)
        return len(live) == len(desired) and all(
            contains(actual, wanted, key) for actual, wanted in zip(live, desired, strict=True)
        )
    return _same_scalar(key, desired, live)


def needs_apply(stamped: Manifest, live: Mapping[str, Any] | None) -> bool:
    if live is None:
        return True
    wanted_hash = stamped["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
    live_hash = (live.get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH_ANNOTATION)
    return wanted_hash != live_hash or not contains(live, stamped)


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to ``parts``."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def take_back(desired: Manifest, live: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) giving every field of ``live`` that the operator sets and that
    differs its desired value again; fields others set beside them stay as they are.

    Server-side apply merges lists by key, so an entry someone re-keyed (a Service port edited
    from 8080 to 8081, still named ``http``) stays beside the desired one and the API server
    refuses the merged result. A JSON patch replaces: each differing key under a top-level
    section (``spec.ports``, ``data.X``), lists whole; each differing label and annotation; the
    owner references. A Service's allocated ``clusterIP``, the HPA-owned ``replicas`` and server
    defaults are not touched. ``add`` replaces a member that exists (RFC 6902, 4.1).
    """
    operations: list[dict[str, Any]] = []

    def take(path: str, wanted: Any) -> None:
        operations.append({"op": "add", "path": path, "value": copy.deepcopy(wanted)})

    live_meta = live.get("metadata") or {}
    for key in ("labels", "annotations"):
        wanted = desired["metadata"].get(key) or {}
        held = live_meta.get(key)
        if not isinstance(held, Mapping):
            if wanted:
                take(_pointer("metadata", key), wanted)
            continue
        for name, value in wanted.items():
            if held.get(name) != value:
                take(_pointer("metadata", key, name), value)
    owners = desired["metadata"].get("ownerReferences")
    if owners is not None and not contains(live_meta.get("ownerReferences"), owners):
        take(_pointer("metadata", "ownerReferences"), owners)
    for section, wanted in desired.items():
        if section in ("apiVersion", "kind", "metadata"):
            continue
        held = live.get(section)
        if isinstance(wanted, Mapping) and isinstance(held, Mapping):
            for key, value in wanted.items():
                if not contains(held.get(key), value, key):
                    take(_pointer(section, key), value)
        elif not contains(held, wanted, section):
            take(_pointer(section), wanted)
    return operations
