"""An in-memory API server behind the operator's transport (``algoedge_operator.kube.Transport``).

Enough of the real one for the reconciler's decisions: objects with uids, resourceVersions and
generations; workloads that report themselves ready; server-side apply that merges (and, like
the real list-map merge, refuses a Service whose re-keyed port keeps a desired port's name);
immutable selectors and StatefulSet specs; deletes that wait for the garbage collector when they
orphan. Every write is recorded, and a test can make the server refuse any write to a child.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

from algoedge_operator.kube import KubeError, ObjectRef, Propagation

WORKLOADS = ("Deployment", "StatefulSet")
#: StatefulSet spec fields an update may change (the API server forbids the rest).
MUTABLE_STATEFUL_SET_FIELDS = {
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
}


def invalid(kind: str, name: str, field: str, message: str, reason: str) -> KubeError:
    text = f'{kind} "{name}" is invalid: {field}: {message}'
    return KubeError(
        f"apply {kind}/{name}: 422 {text}",
        status=422,
        reason="Invalid",
        api_message=text,
        causes=({"reason": reason, "message": message, "field": field},),
    )


def merged(live: Any, patch: Any) -> Any:
    """Server-side apply, roughly: maps merge, lists are replaced."""
    if isinstance(live, Mapping) and isinstance(patch, Mapping):
        result = dict(copy.deepcopy(live))
        for key, value in patch.items():
            result[key] = merged(result.get(key), value)
        return result
    return copy.deepcopy(patch)


class FakeApiServer:
    def __init__(self) -> None:
        self.objects: dict[ObjectRef, dict[str, Any]] = {}
        #: (verb, kind, name) of every write, refused ones included, in order.
        self.writes: list[tuple[str, str, str]] = []
        self.events: list[dict[str, Any]] = []
        self.status_patches: list[dict[str, Any]] = []
        #: (kind, name) -> what the server answers to any apply or update of that child.
        self.refuse: dict[tuple[str, str], KubeError] = {}
        #: API discovery: kinds per group/version beyond the built-in ones (a test "installs"
        #: the Prometheus Operator's CRDs here); ``discovery_error`` makes discovery fail.
        self.served: dict[str, set[str]] = {}
        self.discovery_error: KubeError | None = None
        self.discoveries = 0
        self._version = 100
        self._uids = 0

    # -- test set-up (no writes recorded) -----------------------------------------------------

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as it is (someone else's write: ``kubectl``, a restore)."""
        stored = copy.deepcopy(dict(obj))
        meta = stored["metadata"]
        old = self.objects.get(self.key(stored))
        if old is None:
            self._uids += 1
            meta.setdefault("uid", f"uid-{self._uids}")
            meta["generation"] = 1
        else:
            meta["uid"] = old["metadata"]["uid"]
            changed = old.get("spec") != stored.get("spec")
            meta["generation"] = old["metadata"]["generation"] + int(changed)
        meta["resourceVersion"] = self._next_version()
        if stored["kind"] in WORKLOADS:
            replicas = int(stored["spec"].get("replicas", 1))
            stored["spec"].setdefault("replicas", replicas)
            stored["status"] = {
                "observedGeneration": meta["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
            }
        self.objects[self.key(stored)] = stored
        return copy.deepcopy(stored)

    def secret(
        self, namespace: str, name: str, *, for_tenant: str | None = "acme", **values: str
    ) -> None:
        """A Secret of ``values``, labelled as meant for tenant ``for_tenant`` (None: not)."""
        data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        labels = {"algoedge.io/tenant": for_tenant} if for_tenant is not None else {}
        self.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "data": data,
            }
        )

    def edit(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of the object to change and :meth:`put` back (``kubectl edit``)."""
        return copy.deepcopy(self.objects[ObjectRef(api_version, kind, namespace, name)])

    def collect_garbage(self) -> None:
        """The garbage collector finishes the deletions that waited for it."""
        for key, obj in list(self.objects.items()):
            if obj["metadata"].get("deletionTimestamp"):
                del self.objects[key]

    @staticmethod
    def key(obj: Mapping[str, Any]) -> ObjectRef:
        return ObjectRef.of(obj)

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        for ref, obj in self.objects.items():
            if (ref.kind, ref.name) == (kind, name):
                return obj
        return None

    # -- validation the reconciler meets ------------------------------------------------------

    def _check(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        refusal = self.refuse.get((kind, name))
        if refusal is not None:
            raise refusal
        spec, old_spec = obj.get("spec") or {}, (old or {}).get("spec") or {}
        if kind == "Service":
            names = [port.get("name") for port in spec.get("ports", [])]
            for index, port_name in enumerate(names):
                if port_name in names[:index]:
                    raise invalid(
                        kind,
                        name,
                        f"spec.ports[{index}].name",
                        f'Duplicate value: "{port_name}"',
                        "FieldValueDuplicate",
                    )
        if old is None:
            return
        if kind in WORKLOADS and spec.get("selector") != old_spec.get("selector"):
            raise invalid(
                kind,
                name,
                "spec.selector",
                "Invalid value: field is immutable",
                "FieldValueInvalid",
            )
        if kind == "StatefulSet":
            frozen = set(spec) | set(old_spec)
            if any(spec.get(f) != old_spec.get(f) for f in frozen - MUTABLE_STATEFUL_SET_FIELDS):
                raise invalid(
                    kind,
                    name,
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', "
                    "'ordinals', 'template', 'updateStrategy', "
                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    "FieldValueForbidden",
                )

    # -- the transport --------------------------------------------------------------------------

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        found = self.objects.get(ref)
        return copy.deepcopy(found) if found is not None else None

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
        old = self.objects.get(self.key(manifest))
        result = merged(old or {}, manifest)
        if old is not None:
            # Merging by list key: a Service port someone re-keyed stays beside the desired one.
            old_ports = (old.get("spec") or {}).get("ports")
            new_ports = (manifest.get("spec") or {}).get("ports")
            if old_ports and new_ports:
                wanted = {(p["port"], p.get("protocol", "TCP")) for p in new_ports}
                kept = [p for p in old_ports if (p["port"], p.get("protocol", "TCP")) not in wanted]
                result["spec"]["ports"] = [*copy.deepcopy(new_ports), *kept]
        self._check(result, old)
        return self.put(result)

    def json_patch(self, ref: ObjectRef, operations: list[dict[str, Any]]) -> dict[str, Any]:
        self.writes.append(("patch", ref.kind, ref.name))
        old = self.objects.get(ref)
        if old is None:
            raise KubeError("PATCH: 404 not found", status=404, api_message="not found")
        result = copy.deepcopy(old)
        for operation in operations:
            assert operation["op"] == "add", operation
            *parents, leaf = [
                part.replace("~1", "/").replace("~0", "~")
                for part in operation["path"].split("/")[1:]
            ]
            node = result
            for part in parents:
                node = node[part]  # a missing parent fails, as on the real server
            node[leaf] = copy.deepcopy(operation["value"])
        self._check(result, old)
        return self.put(result)

    def delete(
        self, ref: ObjectRef, *, propagation: Propagation = "Background"
    ) -> dict[str, Any] | None:
        self.writes.append((f"delete/{propagation}", ref.kind, ref.name))
        if ref not in self.objects:
            return None
        if propagation == "Orphan":
            # The garbage collector first takes the owner references off the dependents.
            meta = self.objects[ref]["metadata"]
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            meta["finalizers"] = ["orphan"]
            meta["resourceVersion"] = self._next_version()
            return copy.deepcopy(self.objects[ref])
        del self.objects[ref]
        return None

    def patch_tenant_status(
        self, namespace: str, name: str, status_body: Mapping[str, Any]
    ) -> None:
        self.writes.append(("patch", "AlgoEdgeTenant/status", name))
        self.status_patches.append(dict(status_body))

    def post_event(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))

    def served_kinds(self, api_version: str) -> frozenset[str]:
        self.discoveries += 1
        if self.discovery_error is not None:
            raise self.discovery_error
        return frozenset(self.served.get(api_version, ()))
