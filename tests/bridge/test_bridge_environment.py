"""The bridge environment (.venv-bridge): the real MetaAPI SDK on python-socketio 4, apart from the API's stack."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ALGOEDGE = str(Path(sys.executable).with_name("algoedge"))


def test_should_import_the_metaapi_sdk() -> None:
    from metaapi_cloud_sdk import MetaApi

    assert importlib.metadata.version("metaapi-cloud-sdk") == "29.1.1"
    assert MetaApi is not None


def test_should_run_socketio_4_and_engineio_3_as_the_sdk_requires() -> None:
    assert importlib.metadata.version("python-socketio").startswith("4.")
    assert importlib.metadata.version("python-engineio").startswith("3.")


def test_should_not_have_aioredis_or_the_api_stack() -> None:
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("aioredis")
    # The bridge shares the data layer (aiopg) and redis.asyncio, not the API's web stack.
    for api_only in ("celery", "argon2", "jwt"):
        assert importlib.util.find_spec(api_only) is None, api_only


def test_should_run_the_cli_without_the_api_dependencies() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")}
    shown = subprocess.run(
        [ALGOEDGE, "--help"], env=clean, capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0
    assert "bridge" in shown.stdout
    bridge = subprocess.run(
        [ALGOEDGE, "bridge"], env=clean, capture_output=True, text=True, timeout=60, check=False
    )
    # Configuration is checked before anything connects: exit 2, naming what is missing.
    assert bridge.returncode == 2
    assert "ALGOEDGE_METAAPI_TOKEN is not set" in bridge.stderr
    assert "ALGOEDGE_BRIDGE_POD_NAME is not set" in bridge.stderr


async def test_should_draw_each_processes_socket_reconnect_base_apart() -> None:
    from algoedge.bridge.sdk import RECONNECT_BASE_SECONDS, make_metaapi
    from algoedge.config import BridgeSettings, load_settings
    from cryptography.fernet import Fernet

    settings = load_settings(
        BridgeSettings,
        {
            "ALGOEDGE_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db",
            "ALGOEDGE_REDIS_URL": "redis://127.0.0.1:1/0",
            "ALGOEDGE_CREDENTIALS_KEY": Fernet.generate_key().decode(),
            "ALGOEDGE_METAAPI_TOKEN": "simulated.metaapi-token.for-tests",
            "ALGOEDGE_METAAPI_URL": "http://127.0.0.1:1",
            "ALGOEDGE_BRIDGE_POD_NAME": "t-bridge-0",
        },
    )
    apis = [make_metaapi(settings) for _ in range(5)]
    try:
        bases = [api._metaapi_websocket_client._socket_minimum_reconnect_timeout for api in apis]
    finally:
        for api in apis:
            api.close()
    low, high = RECONNECT_BASE_SECONDS
    assert all(low <= b <= high for b in bases), bases
    # The SDK's own base is 0.5 s in every process: the draw must move it, and apart.
    assert len(set(bases)) == len(bases), bases
