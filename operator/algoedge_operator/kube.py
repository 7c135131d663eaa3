"""The only module that talks to the Kubernetes API: reads, lists and watches, server-side apply,
deletes, status and Events.

Calls are blocking (the kubernetes client); the reconciler runs them in worker threads and the
informers (:mod:`algoedge_operator.informer`) in their own. Every request is counted in
:mod:`algoedge_operator.metrics`, so "zero writes at steady state" can be checked from the
operator's side as well as from the API server's, and so can the reads the watches save.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import urllib3.exceptions
from kubernetes import client, config

from algoedge_operator import metrics
from algoedge_operator.builders.common import MANAGER

if TYPE_CHECKING:
    from algoedge_operator.informer import ChildStore

log = logging.getLogger(__name__)

#: Resource paths of the kinds the operator touches, by (apiVersion, kind).
PLURALS: Mapping[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("v1", "Event"): "events",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("algoedge.io/v1alpha1", "AlgoEdgeTenant"): "algoedgetenants",
}


#: Children kinds, watched cluster-wide by label so reconciles read them from memory.
CHILD_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)
#: Every child carries it (builders.common.metadata); the informers select on it.
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGER}"


class KubeError(RuntimeError):
    """The API server refused a request; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


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
    plural = PLURALS[(api_version, kind)]
    path = f"{_group_path(api_version)}/namespaces/{quote(namespace, safe='')}/{plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


def collection_path(api_version: str, kind: str) -> str:
    """The kind across all namespaces, e.g. ``/apis/apps/v1/deployments``."""
    return f"{_group_path(api_version)}/{PLURALS[(api_version, kind)]}"


class Kube:
    """A thin, typed-enough wrapper over the API for unstructured objects (dicts).

    With a ``store`` (fed by the informers), :meth:`get_child` answers from memory once the
    kind's informer has listed, and writes keep the store current.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        timeout: float = 30.0,
        store: ChildStore | None = None,
    ) -> None:
        self._api = api_client
        self._timeout = timeout
        self._store = store

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
        data = json.loads(raw) if raw else None
        return response.status, data

    @staticmethod
    def _fail(action: str, path: str, status: int, data: Any) -> KubeError:
        message = data.get("message", "") if isinstance(data, dict) else ""
        reason = data.get("reason", "") if isinstance(data, dict) else ""
        return KubeError(
            f"{action} {path}: {status} {message}".strip(), status=status, reason=reason
        )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = resource_path(api_version, kind, namespace, name)
        status, data = self._request("GET", path)
        metrics.API_READS.labels(verb="get", kind=kind).inc()
        if status == 404:
            return None
        if status != 200:
            raise self._fail("GET", path, status, data)
        return dict(data)

    def get_child(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        verify_absence: bool = False,
    ) -> dict[str, Any] | None:
        """An operator-labelled child: from the informers' store once its kind is listed, else
        from the API. (Objects without the label, such as the tenant's own Secrets, use get.)

        The store only holds labelled objects, so an object of that name created without the
        label (by a person, a restore, a `make dev`) looks absent. ``verify_absence`` confirms a
        miss with a GET: callers whose next step would overwrite values, not merely apply a
        manifest, must pass it.
        """
        if self._store is not None and self._store.synced(api_version, kind):
            metrics.CACHE_READS.labels(kind=kind).inc()
            found = self._store.get(api_version, kind, namespace, name)
            if found is not None:
                return copy.deepcopy(found)
            if not verify_absence:
                return None
        return self.get(api_version, kind, namespace, name)

    def list_collection(
        self, api_version: str, kind: str, *, label_selector: str
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of the kind in all namespaces matching the selector, and the list's
        resourceVersion to watch from."""
        path = collection_path(api_version, kind)
        status, data = self._request("GET", path, query={"labelSelector": label_selector})
        metrics.API_READS.labels(verb="list", kind=kind).inc()
        if status != 200:
            raise self._fail("LIST", path, status, data)
        for item in data["items"]:
            # List items omit these; the store keys on them.
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
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Watch events (type, object) until the server ends the watch after ``timeout_seconds``.

        ``on_open`` receives the raw response, so another thread can close it to stop the watch.
        """
        path = collection_path(api_version, kind)
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
        """Server-side apply as ``algoedge-operator``, forcing ownership of the fields it sets."""
        meta = manifest["metadata"]
        path = resource_path(
            manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
        )
        status, data = self._request(
            "PATCH",
            path,
            body=manifest,
            query={"fieldManager": MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )
        metrics.API_WRITES.labels(verb="apply", kind=manifest["kind"]).inc()
        if status not in (200, 201):
            raise self._fail("apply", path, status, data)
        if self._store is not None:
            self._store.put(data)  # the newest state; the watch may report it later
        return dict(data)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete in the background (children go by garbage collection); False if it was gone."""
        path = resource_path(api_version, kind, namespace, name)
        status, data = self._request("DELETE", path, body={"propagationPolicy": "Background"})
        metrics.API_WRITES.labels(verb="delete", kind=kind).inc()
        if self._store is not None and status in (200, 202, 404):
            self._store.discard(api_version, kind, namespace, name)
        if status == 404:
            return False
        if status not in (200, 202):
            raise self._fail("DELETE", path, status, data)
        return True

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
