"""Plain transport to the Kubernetes API: reads, lists and watches, server-side apply, JSON
patch, delete, the tenant's status and Events, for unstructured objects (dicts).

Calls are blocking (the kubernetes client); the reconciler runs them in worker threads and the
informers in their own. Every request is counted in :mod:`algoedge_operator.metrics`, so "zero
writes at steady state" can be checked from the operator's side as well as from the API
server's, and so can the reads the watches save. This module knows nothing of tenants, children
or caches: :mod:`algoedge_operator.informer` wraps it with the watch-fed child cache.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlencode

import urllib3.exceptions
from kubernetes import client, config

from algoedge_operator import metrics

log = logging.getLogger(__name__)

#: ``propagationPolicy`` of a delete: Background lets the garbage collector remove dependents
#: afterwards; Orphan keeps them (a StatefulSet's pods and volume claims) for a successor to adopt.
Propagation = Literal["Background", "Orphan"]


def plural(kind: str) -> str:
    """The resource name of a kind, guessed as apimachinery's ``UnsafeGuessKindToResource`` does
    (right for every kind the operator touches: NetworkPolicy -> networkpolicies)."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


@dataclass(frozen=True)
class ObjectRef:
    """One namespaced object."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectRef:
        meta = manifest["metadata"]
        return cls(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])

    @property
    def path(self) -> str:
        return resource_path(self.api_version, self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class KubeError(RuntimeError):
    """The API server refused a request; ``status`` is the HTTP status (0: no answer).

    The message carries the API server's own (``422 Service "x" is invalid: spec.ports[1].name:
    Duplicate value: "http"``); ``causes`` are its ``details.causes`` (field, reason, message).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        reason: str = "",
        api_message: str = "",
        causes: tuple[Mapping[str, Any], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.api_message = api_message
        self.causes = causes

    @property
    def summary(self) -> str:
        """What went wrong without the request line: ``422 Service "x" is invalid: …``."""
        return f"{self.status} {self.api_message}".strip() if self.status else str(self)

    @property
    def immutable(self) -> bool:
        """Refused only because it would change fields that cannot change once set (a
        Deployment's selector, a StatefulSet's volumeClaimTemplates, a Secret's type): only a new
        object can have the wanted values."""
        if self.status != 422 or not self.causes:
            return False
        return all(
            "immutable" in str(cause.get("message", ""))
            or str(cause.get("message", "")).startswith("Forbidden: updates to")
            for cause in self.causes
        )


class Transport(Protocol):
    """What the reconciler and the child cache need from the API (tests give an in-memory one)."""

    def get(self, ref: ObjectRef) -> dict[str, Any] | None: ...

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...

    def json_patch(self, ref: ObjectRef, operations: list[dict[str, Any]]) -> dict[str, Any]: ...

    def delete(
        self, ref: ObjectRef, *, propagation: Propagation = "Background"
    ) -> dict[str, Any] | None: ...

    def patch_tenant_status(
        self, namespace: str, name: str, status_body: Mapping[str, Any]
    ) -> None: ...

    def post_event(self, event: Mapping[str, Any]) -> None: ...

    def served_kinds(self, api_version: str) -> frozenset[str]: ...


#: How long the answer of API discovery is remembered: installing the Prometheus Operator's CRDs
#: shows within this (plus a resync) without a discovery request per reconcile.
DISCOVERY_TTL_SECONDS = 15.0


class ServedKinds:
    """Which kinds an API group/version serves, by API discovery, each answer remembered for
    ``ttl`` seconds (thread-safe: reconciles run in several threads)."""

    def __init__(
        self,
        api: Transport,
        *,
        ttl: float = DISCOVERY_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, frozenset[str]]] = {}

    def __call__(self, api_version: str) -> frozenset[str]:
        """The kinds served now (empty when the group/version is not); KubeError when discovery
        fails (nothing is remembered then)."""
        now = self._clock()
        with self._lock:
            known = self._known.get(api_version)
        if known is not None and now - known[0] < self._ttl:
            return known[1]
        kinds = self._api.served_kinds(api_version)
        with self._lock:
            self._known[api_version] = (now, kinds)
        return kinds


def connect() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        # Read $KUBECONFIG now: the client library reads it once, at import time.
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
        )
    return client.ApiClient(configuration)


def _group_path(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def resource_path(
    api_version: str, kind: str, namespace: str, name: str | None = None, subresource: str = ""
) -> str:
    path = f"{_group_path(api_version)}/namespaces/{quote(namespace, safe='')}/{plural(kind)}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    """The kind across all namespaces, e.g. ``/apis/apps/v1/deployments``, or in one."""
    if namespace is not None:
        return resource_path(api_version, kind, namespace)
    return f"{_group_path(api_version)}/{plural(kind)}"


class Kube:
    """A thin, typed-enough client of the API for unstructured objects (dicts); writes go out
    as ``field_manager``."""

    def __init__(
        self, api_client: client.ApiClient, *, field_manager: str, timeout: float = 30.0
    ) -> None:
        self._api = api_client
        self._field_manager = field_manager
        self._timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        url_path = path + ("?" + urlencode(query) if query else "")
        serialized = self._api.param_serialize(
            method=method,
            resource_path=url_path,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            return self._api.call_api(*serialized, _request_timeout=timeout or self._timeout)
        except urllib3.exceptions.HTTPError as error:  # no answer: refused, reset, timed out
            raise KubeError(f"{method} {path}: {error}", status=0) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        response = self._call(method, path, body=body, query=query, content_type=content_type)
        raw = response.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            # Not JSON: e.g. "404 page not found" for an API group the server does not serve.
            data = {"message": raw[:200].decode(errors="replace").strip()}
        return response.status, data

    @staticmethod
    def _fail(action: str, path: str, status: int, data: Any) -> KubeError:
        body = data if isinstance(data, dict) else {}
        causes = (body.get("details") or {}).get("causes") or []
        message = str(body.get("message", ""))
        return KubeError(
            f"{action} {path}: {status} {message}".strip(),
            status=status,
            reason=str(body.get("reason", "")),
            api_message=message,
            causes=tuple(cause for cause in causes if isinstance(cause, dict)),
        )

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        path = ref.path
        status, data = self._request("GET", path)
        metrics.API_READS.labels(verb="get", kind=ref.kind).inc()
        if status == 404:
            return None
        if status != 200:
            raise self._fail("GET", path, status, data)
        return dict(data)

    def list_collection(
        self, api_version: str, kind: str, *, label_selector: str, namespace: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of the kind in all namespaces (or in ``namespace``) matching the
        selector, and the list's resourceVersion to watch from."""
        path = collection_path(api_version, kind, namespace)
        status, data = self._request("GET", path, query={"labelSelector": label_selector})
        metrics.API_READS.labels(verb="list", kind=kind).inc()
        if status != 200:
            raise self._fail("LIST", path, status, data)
        for item in data["items"]:
            # List items omit these; callers key on them.
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return list(data["items"]), str(data["metadata"]["resourceVersion"])

    def watch_collection(
        self,
        api_version: str,
        kind: str,
        *,
        label_selector: str,
        resource_version: str,
        timeout_seconds: int,
        on_open: Callable[[Any], None] = lambda response: None,
        namespace: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Watch events (type, object) in all namespaces (or in ``namespace``) until the server
        ends the watch after ``timeout_seconds``.

        ``on_open`` receives the raw response, so another thread can close it to stop the watch.
        """
        path = collection_path(api_version, kind, namespace)
        query = {
            "watch": "true",
            "labelSelector": label_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        response = self._call("GET", path, query=query, timeout=timeout_seconds + 30)
        metrics.API_READS.labels(verb="watch", kind=kind).inc()
        if response.status != 200:
            raw = response.read()
            raise self._fail("WATCH", path, response.status, json.loads(raw) if raw else None)
        on_open(response.response)
        buffer = b""
        try:
            for chunk in response.response.stream(65536, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        obj = dict(event["object"])
                        obj.setdefault("apiVersion", api_version)
                        obj.setdefault("kind", kind)
                        yield str(event["type"]), obj
        except urllib3.exceptions.HTTPError as error:  # the connection broke mid-watch
            raise KubeError(f"WATCH {path}: {error}", status=0) from None
        finally:
            response.response.release_conn()

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply, forcing ownership of the fields it sets."""
        path = ObjectRef.of(manifest).path
        status, data = self._request(
            "PATCH",
            path,
            body=manifest,
            query={"fieldManager": self._field_manager, "force": "true"},
            content_type="application/apply-patch+yaml",
        )
        metrics.API_WRITES.labels(verb="apply", kind=manifest["kind"]).inc()
        if status not in (200, 201):
            raise self._fail("apply", path, status, data)
        return dict(data)

    def json_patch(self, ref: ObjectRef, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON patch (RFC 6902): replaces what it names, lists whole."""
        path = ref.path
        status, data = self._request(
            "PATCH",
            path,
            body=operations,
            query={"fieldManager": self._field_manager},
            content_type="application/json-patch+json",
        )
        metrics.API_WRITES.labels(verb="patch", kind=ref.kind).inc()
        if status != 200:
            raise self._fail("PATCH", path, status, data)
        return dict(data)

    def delete(
        self, ref: ObjectRef, *, propagation: Propagation = "Background"
    ) -> dict[str, Any] | None:
        """Delete; the object as it stands while its deletion waits (finalizers, such as the
        garbage collector's ``orphan``), None once it is gone or was already."""
        path = ref.path
        status, data = self._request("DELETE", path, body={"propagationPolicy": propagation})
        metrics.API_WRITES.labels(verb="delete", kind=ref.kind).inc()
        if status == 404:
            return None
        if status not in (200, 202):
            raise self._fail("DELETE", path, status, data)
        pending = (
            isinstance(data, dict)
            and data.get("kind") == ref.kind
            and (status == 202 or bool((data.get("metadata") or {}).get("deletionTimestamp")))
        )
        return dict(data) if pending else None

    def served_kinds(self, api_version: str) -> frozenset[str]:
        """Kinds of the group/version's resources by API discovery (``GET /apis/<g>/<v>``, which
        every authenticated client may read); empty when the API server does not serve it."""
        path = _group_path(api_version)
        status, data = self._request("GET", path)
        metrics.API_READS.labels(verb="discover", kind=api_version).inc()
        if status == 404:
            return frozenset()
        if status != 200:
            raise self._fail("GET", path, status, data)
        resources = (data or {}).get("resources") or []
        # Subresources (podmonitors/status) share their kind: only the resources themselves.
        return frozenset(str(r["kind"]) for r in resources if "/" not in str(r.get("name", "")))

    def patch_tenant_status(
        self, namespace: str, name: str, status_body: Mapping[str, Any]
    ) -> None:
        path = resource_path("algoedge.io/v1alpha1", "AlgoEdgeTenant", namespace, name, "status")
        status, data = self._request(
            "PATCH", path, body={"status": status_body}, content_type="application/merge-patch+json"
        )
        metrics.API_WRITES.labels(verb="patch", kind="AlgoEdgeTenant/status").inc()
        if status == 404:
            return  # deleted meanwhile
        if status != 200:
            raise self._fail("PATCH", path, status, data)

    def post_event(self, event: Mapping[str, Any]) -> None:
        namespace = event["metadata"]["namespace"]
        path = resource_path("v1", "Event", namespace)
        status, data = self._request("POST", path, body=event)
        metrics.API_WRITES.labels(verb="create", kind="Event").inc()
        if status not in (200, 201):
            # An Event is informational: losing one must not fail a reconcile.
            log.warning(
                "could not post Event in %s: %s", namespace, self._fail("POST", path, status, data)
            )
