"""Raw JSON requests to a Kubernetes API server through the official client's transport.

Tests and benchmarks often need a path the typed client does not model well (server-side apply
with YAML, /metrics, subresources); this is the one place that does it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

#: Verbs `apiserver_request_total` uses for writes (APPLY is server-side apply's PATCH).
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})

if TYPE_CHECKING:
    from kubernetes import client as k8s_client


def api_request(
    api_client: k8s_client.ApiClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    ok: tuple[int, ...] = (200, 201, 202),
    timeout: float = 60,
) -> Any:
    """JSON (or text) of the answer; ``kubernetes.client.ApiException`` for a status not in ``ok``."""
    from kubernetes import client

    serialized = api_client.param_serialize(
        method=method,
        resource_path=path,
        header_params={"Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(*serialized, _request_timeout=timeout)
    data = response.read()  # type: ignore[no-untyped-call]
    if response.status not in ok:
        raise client.ApiException(status=response.status, reason=data.decode(errors="replace"))
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")


#: Kinds the operator writes, as the API server names them in apiserver_request_total.
OPERATOR_RESOURCES = frozenset(
    {
        "configmaps",
        "secrets",
        "services",
        "deployments",
        "statefulsets",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
        "networkpolicies",
        "algoedgetenants",
    }
)
