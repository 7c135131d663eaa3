"""The API and migrate commands as the images run them: real processes, real Postgres via pgBouncer, real Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import api_environment
from tests.services import PgBouncer, RedisServer, free_port

ALGOEDGE = str(Path(sys.executable).with_name("algoedge"))


def get(url: str) -> tuple[int, str, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.load(error)


def command_env(extra: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")}
    return {**clean, **extra}


@pytest.fixture
def environment(
    pgbouncer: PgBouncer, redis_server: RedisServer, database_name: str
) -> dict[str, str]:
    port = free_port()
    env = api_environment(pgbouncer.url_for(database_name), redis_server.url)
    return {**env, "ALGOEDGE_HTTP_PORT": str(port), "ALGOEDGE_HTTP_HOST": "127.0.0.1"}


@pytest.fixture
def api(environment: dict[str, str]) -> Iterator[str]:
    process = subprocess.Popen([ALGOEDGE, "api"], env=command_env(environment))
    base = f"http://127.0.0.1:{environment['ALGOEDGE_HTTP_PORT']}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"algoedge api did not come up (exit code {process.poll()})")
            time.sleep(0.1)
    yield base
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_should_migrate_then_find_nothing_left_to_do(environment: dict[str, str]) -> None:
    first = subprocess.run(
        [ALGOEDGE, "migrate"],
        env=command_env(environment),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    assert "0001_users" in first.stdout
    second = subprocess.run(
        [ALGOEDGE, "migrate"],
        env=command_env(environment),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    assert "migrations applied: 0" in second.stdout


def test_should_fail_migrate_in_one_line_when_the_database_is_unreachable(
    environment: dict[str, str],
) -> None:
    closed = f"postgresql://u:p@127.0.0.1:{free_port()}/nowhere"
    result = subprocess.run(
        [ALGOEDGE, "migrate"],
        env=command_env({**environment, "ALGOEDGE_DATABASE_URL": closed}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("algoedge migrate: failed:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_should_report_live_and_ready(api: str) -> None:
    assert get(f"{api}/healthz")[0] == 200
    status, _, body = get(f"{api}/readyz")
    assert status == 200
    assert body["checks"] == {"postgres": "ok", "redis": "ok"}


def test_should_answer_an_unknown_route_with_a_problem(api: str) -> None:
    status, content_type, body = get(f"{api}/no/such/route")
    assert status == 404
    assert content_type.startswith("application/problem+json")
    assert body["status"] == 404
    assert body["title"] == "Not Found"


def test_should_stop_cleanly_on_sigterm(environment: dict[str, str]) -> None:
    process = subprocess.Popen([ALGOEDGE, "api"], env=command_env(environment))
    base = f"http://127.0.0.1:{environment['ALGOEDGE_HTTP_PORT']}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310
            break
        except OSError:
            time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_should_turn_not_ready_when_redis_dies_and_recover(
    pgbouncer: PgBouncer, database_name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    redis = RedisServer(root=tmp_path_factory.mktemp("redis-dies")).start()
    port = free_port()
    env = {
        **api_environment(pgbouncer.url_for(database_name), redis.url),
        "ALGOEDGE_HTTP_PORT": str(port),
        "ALGOEDGE_HTTP_HOST": "127.0.0.1",
    }
    process = subprocess.Popen([ALGOEDGE, "api"], env=command_env(env))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        assert get(f"{base}/readyz")[0] == 200
        redis.kill()
        status, content_type, body = get(f"{base}/readyz")
        assert status == 503
        assert content_type.startswith("application/problem+json")
        assert body["checks"] == {"postgres": "ok", "redis": "ConnectionError"}
        assert get(f"{base}/healthz")[0] == 200
        redis.start()
        assert get(f"{base}/readyz")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        redis.stop()
