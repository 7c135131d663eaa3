"""The main environment has the API stack (python-socketio 5 on redis-py) and no aioredis."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_should_not_have_aioredis_installed() -> None:
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("aioredis")


def test_should_import_socketio_5_with_redis_asyncio() -> None:
    import redis.asyncio
    import socketio

    assert importlib.metadata.version("python-socketio").startswith("5.")
    assert socketio.AsyncRedisManager is not None
    assert redis.asyncio.Redis is not None


def test_should_keep_aioredis_out_of_the_lock_file() -> None:
    assert '[[package]]\nname = "aioredis"' not in (ROOT / "uv.lock").read_text()


def test_should_refuse_the_api_and_bridge_extras_together() -> None:
    uv = os.environ.get("UV_BIN")
    if not uv:
        pytest.skip("UV_BIN is not set (the Makefile sets it to the project's uv)")
    result = subprocess.run(
        [uv, "sync", "--dry-run", "--locked", "--extra", "api", "--extra", "bridge"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "incompatible with the declared conflicts" in result.stderr
