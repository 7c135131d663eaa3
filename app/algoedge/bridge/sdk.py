"""The one place the bridge builds a metaapi-cloud-sdk 29.1.1 ``MetaApi`` and aims it at a base URL.

``point_sdk_at`` sets only the attributes the SDK's own code reads for its hosts
(docs/metaapi-sim.md lists them); they are private names, so the SDK version is pinned in
pyproject.toml. It serves the bridge (``ALGOEDGE_METAAPI_URL``) and the simulator's tests.
"""

from __future__ import annotations

import math
import random
from typing import Any

from algoedge.config import BridgeSettings

#: The SDK's history cache and logs go to ./.metaapi; the bridge's working directory is writable.
APPLICATION = "AlgoEdge"
#: The SDK waits twice its base (0.5 s, the same in every process) before reconnecting a dropped
#: socket, doubling up to 30 s: after MetaAPI drops every socket, every replica's sockets would
#: come back at the same instant. Each process draws its own base from this range, so the
#: replicas' first reconnects spread over 0.5-5 s; the synchronizations that follow are bounded by
#: the throttler below. (Sockets of one process share the draw: the SDK keeps one base.)
RECONNECT_BASE_SECONDS = (0.25, 2.5)


def make_metaapi(settings: BridgeSettings) -> Any:
    """One SDK instance for the process, its synchronization throttler bounded like our queue."""
    from metaapi_cloud_sdk import MetaApi

    api = MetaApi(
        settings.metaapi_token.get_secret_value(),
        {
            "application": APPLICATION,
            "domain": settings.metaapi_domain,
            "requestTimeout": 60,
            # Connects the bridge itself retries (with jitter); the SDK's own retries stay short.
            "retryOpts": {"retries": 2, "minDelayInSeconds": 1, "maxDelayInSeconds": 10},
            # Counted per region and instance index across all of the SDK's sockets: with
            # regular reliability (instance 0 only) this bounds the process's synchronizations,
            # including those the SDK starts by itself after a socket reconnects.
            "synchronizationThrottler": {
                "maxConcurrentSynchronizations": settings.bridge_max_concurrent_syncs,
            },
        },
    )
    # A private attribute the SDK reads for every socket's reconnect wait (version pinned).
    api._metaapi_websocket_client._socket_minimum_reconnect_timeout = random.uniform(  # noqa: S311 - jitter
        *RECONNECT_BASE_SECONDS
    )
    if settings.metaapi_url is not None:
        point_sdk_at(api, settings.metaapi_url)
    return api


def point_sdk_at(api: Any, base_url: str) -> None:
    """Send every REST call and socket of ``api`` (a ``metaapi_cloud_sdk.MetaApi``) to ``base_url``."""
    base = base_url.rstrip("/")
    # The SDK's "patch server URL for unit tests" hook: sockets and the latency probe.
    api._metaapi_websocket_client.set_url(base)
    api._metatrader_account_api._metatrader_account_client._host = base
    domain_client = api._metaapi_websocket_client._domain_client
    # Skips GET https://mt-provisioning-api-v1.<domain>/users/current/servers/mt-client-api.
    domain_client._url_cache = {
        "domain": domain_client.domain,
        "hostname": "mt-client-api-v1",
        "requestPromise": None,
        "lastUpdated": math.inf,
    }
    # Then GET <base>/client-api.<region>.<domain>/hashing-ignored-field-lists.
    api._terminal_hash_manager._client_api_client._host = f"{base}/client-api"
