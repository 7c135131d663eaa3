"""The API and migrate commands as the images run them: real processes, Postgres via pgBouncer, Redis."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.app import ALGOEDGE, api_environment, command_env
from devtools.services import PgBouncer, PostgresServer, RedisServer, free_port
from tests.integration.conftest import api_process, spawn_api


def get(url: str) -> tuple[int, str, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.load(error)


def run_migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALGOEDGE, "migrate"],
        env=command_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def environment(
    pgbouncer: PgBouncer, redis_server: RedisServer, database_name: str
) -> dict[str, str]:
    return api_environment(pgbouncer.url_for(database_name), redis_server.url)


@pytest.fixture
def api(environment: dict[str, str]) -> Iterator[str]:
    with api_process(environment) as base:
        yield base


def test_should_migrate_then_find_nothing_left_to_do(environment: dict[str, str]) -> None:
    first = run_migrate(environment)
    assert first.returncode == 0, first.stderr
    assert "0001_users" in first.stdout
    assert "0003_indexes" in first.stdout
    second = run_migrate(environment)
    assert second.returncode == 0, second.stderr
    assert "migrations applied: 0" in second.stdout


def test_should_fail_migrate_in_one_line_when_the_database_is_unreachable(
    environment: dict[str, str],
) -> None:
    closed = f"postgresql://u:p@127.0.0.1:{free_port()}/nowhere"
    result = run_migrate({**environment, "ALGOEDGE_DATABASE_URL": closed})
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


def test_should_answer_a_request_racing_sigterm_then_exit_0(environment: dict[str, str]) -> None:
    """SIGTERM right after a request was sent: it is answered, then the process exits 0.

    Weak by nature: the request may finish before the signal lands; it does prove that the
    shutdown path answers or drains rather than dropping the connection, and exits cleanly.
    """
    process, base = spawn_api(environment)
    try:
        # /readyz is slow-ish (two network checks); send SIGTERM while it is in flight.
        results: list[int] = []
        worker = threading.Thread(target=lambda: results.append(get(f"{base}/readyz")[0]))
        worker.start()
        time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        worker.join(timeout=30)
        assert results in ([200], [503])
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_should_stay_ready_but_say_degraded_when_redis_dies_and_recover(
    pgbouncer: PgBouncer, database_name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Redis is every pod's: failing readiness on it would empty the Service at once, while each
    use of Redis has a fallback. /readyz reports it and stays 200; /healthz never looks."""
    redis = RedisServer(root=tmp_path_factory.mktemp("redis-dies")).start()
    try:
        with api_process(api_environment(pgbouncer.url_for(database_name), redis.url)) as base:
            assert get(f"{base}/readyz")[2]["status"] == "ready"
            redis.kill()
            status, _, body = get(f"{base}/readyz")
            assert status == 200
            assert body == {
                "status": "degraded",
                "checks": {"postgres": "ok", "redis": "ConnectionError"},
            }
            assert get(f"{base}/healthz")[0] == 200
            redis.start()
            assert get(f"{base}/readyz")[2]["status"] == "ready"
    finally:
        redis.stop()


def test_should_turn_not_ready_when_postgres_cannot_answer(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory, database_name: str
) -> None:
    """What this pod alone needs, its Postgres pool, is what readiness fails on."""
    # Not under pytest's folder: pgBouncer runs as the postgres user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="algoedge-bouncer-"))
    root.chmod(0o755)
    bouncer = PgBouncer(root=root, upstream=postgres).start()
    redis = RedisServer(root=tmp_path_factory.mktemp("redis-lives")).start()
    try:
        with api_process(api_environment(bouncer.url_for(database_name), redis.url)) as base:
            assert get(f"{base}/readyz")[0] == 200
            bouncer.kill()
            status, content_type, body = get(f"{base}/readyz")
            assert status == 503
            assert content_type.startswith("application/problem+json")
            checks = body["checks"]
            assert isinstance(checks, dict)
            assert checks["postgres"] != "ok"
            assert checks["redis"] == "ok"
            assert get(f"{base}/healthz")[0] == 200
    finally:
        bouncer.stop()
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
