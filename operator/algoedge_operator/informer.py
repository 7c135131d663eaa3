"""Watch-fed memory of the operator's children, so reconciles do not poll the API server.

One informer thread per child kind (:func:`algoedge_operator.builders.watched_kinds`) lists every
object carrying the operator's managed-by label in all namespaces, then watches from that list's
resourceVersion; with watched namespaces (``ALGOEDGE_OPERATOR_NAMESPACES``) one thread per kind
and namespace does the same in its namespace, so no read leaves them. What it sees goes into one :class:`ChildStore`. A relist (at start, after an
expired watch or an error) replaces the kind's whole contents, so an object deleted while no
watch was open does not linger. Every change to a tenant's child calls
``on_change(namespace, tenant_name)``: a deleted or edited child is repaired at once rather than
at the next resync, and a workload turning ready updates the tenant's status at once.

:class:`ChildCache` wraps the transport (:mod:`algoedge_operator.kube`) for the reconciler: it
answers reads of children from the store once their kind is listed, and puts the operator's own
writes (apply and patch responses, deletes) into the store as they happen. The store ignores a
watch event older than what it holds, so a reconcile never reads its own write back as stale.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from algoedge_operator import metrics
from algoedge_operator.builders import watched_kinds
from algoedge_operator.builders.common import INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER
from algoedge_operator.kube import Kube, KubeError, ObjectRef, Propagation, Transport

log = logging.getLogger(__name__)

#: Every child carries the label (builders.common.metadata); the informers select on it.
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGER}"
#: The server ends each watch after this long; the informer re-watches from where it was.
WATCH_SECONDS = 240
#: Longest pause between attempts after the API server failed an informer.
MAX_BACKOFF_SECONDS = 30.0

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name
OnChange = Callable[[str, str], None]


def _key(obj: Mapping[str, Any]) -> Key:
    metadata = obj["metadata"]
    return (str(obj["apiVersion"]), str(obj["kind"]), metadata["namespace"], metadata["name"])


def _version(obj: Mapping[str, Any]) -> int | None:
    """The object's resourceVersion as a number (etcd's revision), None if it is not one."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def _older(incoming: Mapping[str, Any], held: Mapping[str, Any] | None) -> bool:
    """True when ``incoming`` is an earlier state than ``held``. resourceVersions are opaque by
    contract, but the API server's are etcd revisions; anything else is taken as newer."""
    if held is None:
        return False
    new, old = _version(incoming), _version(held)
    return new is not None and old is not None and new < old


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the store keeps: the object without ``metadata.managedFields``, which nothing here
    reads and which is often the larger part of a Deployment."""
    metadata = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {**obj, "metadata": metadata}


def owner_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, tenant name) of a child, from its instance label."""
    metadata = obj.get("metadata") or {}
    name = (metadata.get("labels") or {}).get(INSTANCE_LABEL)
    namespace = metadata.get("namespace")
    return (str(namespace), str(name)) if name and namespace else None


class ChildStore:
    """Thread-safe map of the operator's children by (apiVersion, kind, namespace, name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        #: (apiVersion, kind, namespace) listed; namespace None: listed in all namespaces.
        self._synced: set[tuple[str, str, str | None]] = set()

    def synced(self, api_version: str, kind: str, namespace: str | None = None) -> bool:
        """Whether the kind has been listed (in all namespaces, or in ``namespace``), so that
        absence from the store means absence."""
        with self._lock:
            return (api_version, kind, None) in self._synced or (
                namespace is not None and (api_version, kind, namespace) in self._synced
            )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get((api_version, kind, namespace, name))

    def put(self, obj: Mapping[str, Any]) -> bool:
        """Hold ``obj`` unless the store has a newer state of it; True if it changed."""
        key = _key(obj)
        with self._lock:
            held = self._objects.get(key)
            if _older(obj, held) or (held is not None and _version(held) == _version(obj)):
                return False
            self._objects[key] = _slim(obj)
            return True

    def remove(self, obj: Mapping[str, Any]) -> bool:
        """Forget a deleted object unless the store holds a newer state; True if it was held."""
        key = _key(obj)
        with self._lock:
            held = self._objects.get(key)
            if held is None or _older(obj, held):
                return False
            del self._objects[key]
            return True

    def discard(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((api_version, kind, namespace, name), None)

    def replace(
        self,
        api_version: str,
        kind: str,
        items: Iterable[Mapping[str, Any]],
        *,
        namespace: str | None = None,
    ) -> set[tuple[str, str]]:
        """The kind's whole contents (in all namespaces, or in ``namespace`` only) from a fresh
        list; the owners of whatever changed."""
        fresh = {_key(item): _slim(item) for item in items}
        changed: set[tuple[str, str]] = set()
        with self._lock:
            held = {
                k: v
                for k, v in self._objects.items()
                if k[:2] == (api_version, kind) and (namespace is None or k[2] == namespace)
            }
            for key in held.keys() - fresh.keys():
                del self._objects[key]
            for key, obj in fresh.items():
                if key in held and _version(held[key]) == _version(obj):
                    continue
                self._objects[key] = obj
            self._synced.add((api_version, kind, namespace))
        for key in held.keys() ^ fresh.keys():
            owner = owner_of(held.get(key) or fresh[key])
            if owner is not None:
                changed.add(owner)
        for key in held.keys() & fresh.keys():
            if _version(held[key]) != _version(fresh[key]):
                owner = owner_of(fresh[key])
                if owner is not None:
                    changed.add(owner)
        return changed

    def apply_event(self, event_type: str, obj: Mapping[str, Any]) -> bool:
        """One watch event; True if the store changed."""
        if event_type in ("ADDED", "MODIFIED"):
            return self.put(obj)
        if event_type == "DELETED":
            return self.remove(obj)
        return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)


class _WatchExpired(Exception):
    """The API server no longer has the resourceVersion the watch asked for (410 Gone)."""


class Informer:
    """List-then-watch of one kind into the store, in a daemon thread, until stopped."""

    def __init__(
        self,
        kube: Kube,
        store: ChildStore,
        api_version: str,
        kind: str,
        on_change: OnChange,
        *,
        namespace: str | None = None,
    ) -> None:
        """``namespace``: list and watch only there (None: in all namespaces)."""
        self._kube = kube
        self._store = store
        self._api_version = api_version
        self._kind = kind
        self._namespace = namespace
        self._on_change = on_change
        self._stopped = threading.Event()
        self._response_lock = threading.Lock()
        self._response: Any = None
        where = f" in {namespace}" if namespace else ""
        self._thread = threading.Thread(
            target=self._run, name=f"informer {kind}{where}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop now: closing the open watch's connection wakes the thread blocked on it."""
        self._stopped.set()
        with self._response_lock:
            response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:
                log.debug("closing the %s watch failed", self._kind, exc_info=True)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _opened(self, response: Any) -> None:
        with self._response_lock:
            self._response = response
        if self._stopped.is_set():
            response.shutdown()

    def _changed(self, owners: Iterable[tuple[str, str]]) -> None:
        for namespace, name in owners:
            if not self._stopped.is_set():
                self._on_change(namespace, name)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopped.is_set():
            try:
                items, version = self._kube.list_collection(
                    self._api_version,
                    self._kind,
                    label_selector=MANAGED_SELECTOR,
                    namespace=self._namespace,
                )
                self._changed(
                    self._store.replace(
                        self._api_version, self._kind, items, namespace=self._namespace
                    )
                )
                backoff = 1.0
                while not self._stopped.is_set():
                    version = self._watch(version)
            except _WatchExpired:
                continue  # relist at once
            except KubeError as error:
                if self._stopped.is_set():
                    return
                if error.status == 404:
                    # Not served: an optional kind whose CRD is not installed (PodMonitor without
                    # the Prometheus Operator). Said once; then API discovery, not a list, asks
                    # every 30 s whether it is served yet.
                    log.info("informer %s: kind not served; waiting for it", self._kind)
                    self._wait_until_served()
                    continue
                log.warning("informer %s: %s; relisting in %.0fs", self._kind, error, backoff)
            except (OSError, ValueError, KeyError, TypeError) as error:
                if self._stopped.is_set():
                    return
                log.warning("informer %s: %s; relisting in %.0fs", self._kind, error, backoff)
            except Exception:
                if self._stopped.is_set():
                    return
                log.exception("informer %s failed; relisting in %.0fs", self._kind, backoff)
            self._stopped.wait(backoff)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)

    def _wait_until_served(self) -> None:
        """Until stopped or the kind is served (discovery says so), every MAX_BACKOFF_SECONDS."""
        while not self._stopped.wait(MAX_BACKOFF_SECONDS):
            try:
                if self._kind in self._kube.served_kinds(self._api_version):
                    return
            except KubeError as error:
                log.debug("informer %s: discovery failed: %s", self._kind, error)

    def _watch(self, version: str) -> str:
        """One watch from ``version``; the version to continue from."""
        for event_type, obj in self._kube.watch_collection(
            self._api_version,
            self._kind,
            label_selector=MANAGED_SELECTOR,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
            on_open=self._opened,
            namespace=self._namespace,
        ):
            if event_type == "ERROR":
                if obj.get("code") == 410:
                    raise _WatchExpired
                raise KubeError(f"watch {self._kind}: {obj.get('message')}", status=0)
            version = str(obj["metadata"]["resourceVersion"])
            if event_type == "BOOKMARK":
                continue
            if self._store.apply_event(event_type, obj):
                owner = owner_of(obj)
                if owner is not None:
                    self._changed([owner])
        return version


def start_informers(
    kube: Kube, store: ChildStore, on_change: OnChange, *, namespaces: tuple[str, ...] = ()
) -> list[Informer]:
    """One informer per watched kind, in all namespaces, or per kind and namespace of
    ``namespaces`` when given."""
    scopes: tuple[str | None, ...] = namespaces or (None,)
    informers = [
        Informer(kube, store, api_version, kind, on_change, namespace=namespace)
        for api_version, kind in watched_kinds()
        for namespace in scopes
    ]
    for informer in informers:
        informer.start()
    return informers


class ChildCache:
    """The transport as the reconciler sees children: reads from the store where it can, writes
    through to the API and into the store. Without a store every read is a GET."""

    def __init__(self, api: Transport, store: ChildStore | None = None) -> None:
        self._api = api
        self._store = store

    def get(self, ref: ObjectRef, *, verify_absence: bool = False) -> dict[str, Any] | None:
        """An operator-labelled child: from the store once its kind is listed, else from the API.
        (Objects without the label, such as the tenant's own Secrets, go to the transport.)

        The store only holds labelled objects, so an object of that name created without the
        label (by a person, a restore, a `make dev`) looks absent. ``verify_absence`` confirms a
        miss with a GET: callers whose next step would overwrite values, not merely apply a
        manifest, must pass it.
        """
        if self._store is not None and self._store.synced(ref.api_version, ref.kind, ref.namespace):
            metrics.CACHE_READS.labels(kind=ref.kind).inc()
            found = self._store.get(ref.api_version, ref.kind, ref.namespace, ref.name)
            if found is not None:
                return copy.deepcopy(found)
            if not verify_absence:
                return None
        return self._api.get(ref)

    def _keep(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self._store is not None:
            self._store.put(obj)  # the newest state; the watch may report it later
        return obj

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return self._keep(self._api.apply(manifest))

    def json_patch(self, ref: ObjectRef, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return self._keep(self._api.json_patch(ref, operations))

    def delete(
        self, ref: ObjectRef, *, propagation: Propagation = "Background"
    ) -> dict[str, Any] | None:
        """Delete; the object while its deletion waits for finalizers, else None."""
        remaining = self._api.delete(ref, propagation=propagation)
        if remaining is not None:
            return self._keep(remaining)
        if self._store is not None:
            self._store.discard(ref.api_version, ref.kind, ref.namespace, ref.name)
        return None
