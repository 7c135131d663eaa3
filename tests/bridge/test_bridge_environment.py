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
