"""Point a real metaapi-cloud-sdk 29.1.1 ``MetaApi`` at the simulator (or any base URL), without patching functions.

Sets only the attributes the SDK's own code reads for its hosts (docs/metaapi-sim.md lists them);
they are private names, so the SDK version is pinned in pyproject.toml.
"""

from __future__ import annotations

import math
from typing import Any


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
