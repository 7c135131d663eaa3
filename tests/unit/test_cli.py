"""The `algoedge` command as a person runs it: help, configuration errors, unfinished commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ALGOEDGE = Path(sys.executable).with_name("algoedge")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")}
    return subprocess.run(
        [str(ALGOEDGE), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_should_list_every_subcommand_in_help() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("api", "worker", "beat", "migrate", "bridge"):
        assert command in result.stdout


def test_should_refuse_an_unknown_subcommand() -> None:
    result = run("serve")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_should_fail_in_one_line_naming_a_bad_database_url() -> None:
    result = run("migrate", env={"ALGOEDGE_DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ALGOEDGE_DATABASE_URL" in lines[0]
    assert "postgresql://" in lines[0]
    assert "hunter2" not in result.stderr


def test_should_name_every_missing_variable_of_the_api() -> None:
    result = run("api")
    assert result.returncode == 2
    for name in ("ALGOEDGE_DATABASE_URL", "ALGOEDGE_REDIS_URL", "ALGOEDGE_JWT_SECRET"):
        assert name in result.stderr


BASE = {
    "ALGOEDGE_DATABASE_URL": "postgresql://u:p@db:5432/x",
    "ALGOEDGE_REDIS_URL": "redis://r:6379/0",
}


@pytest.mark.parametrize(
    ("command", "variable", "value", "expected"),
    [
        ("worker", "ALGOEDGE_SMTP_URL", "smtp://u:hunter2@mail", "has no port"),
        ("worker", "ALGOEDGE_SMTP_URL", "smtps://u:hunter2@mail:465?starttls=true", "TLS already"),
        ("worker", "ALGOEDGE_SMTP_URL", "smtp://u:hunter2@mail:25?tls=1", "unknown query"),
        ("worker", "ALGOEDGE_MAIL_FROM", "hunter2", "must be a mailbox"),
        ("worker", "ALGOEDGE_MAIL_FROM", "a@b.c\r\nBcc: hunter2@x.y", "must be a mailbox"),
        ("worker", "ALGOEDGE_WORKER_CONCURRENCY", "0", "ALGOEDGE_WORKER_CONCURRENCY"),
        ("worker", "ALGOEDGE_JOBS_VISIBILITY_TIMEOUT", "5", "from 6 to 43200"),
        ("beat", "ALGOEDGE_REPORT_DAILY_AT", "24:00", "HH:MM"),
        ("beat", "ALGOEDGE_REPORT_DAILY_AT", "7:30", "HH:MM"),
        ("beat", "ALGOEDGE_METRICS_PORT", "65536", "ALGOEDGE_METRICS_PORT"),
    ],
)
def test_should_refuse_bad_jobs_settings_in_one_line_without_the_value(
    command: str, variable: str, value: str, expected: str
) -> None:
    result = run(command, env={**BASE, variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert expected in lines[0]
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--max-age", "0"], "must be above 0"), (["--max-age", "soon"], "must be a number")],
)
def test_should_refuse_a_bad_probe_age(args: list[str], message: str) -> None:
    result = run("probe", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_should_fail_the_probe_while_no_heartbeat_exists(tmp_path: Path) -> None:
    result = run("probe", "--max-age", "60", env={"ALGOEDGE_HEARTBEAT_FILE": str(tmp_path / "hb")})
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    (tmp_path / "hb").touch()
    assert (
        run(
            "probe", "--max-age", "60", env={"ALGOEDGE_HEARTBEAT_FILE": str(tmp_path / "hb")}
        ).returncode
        == 0
    )


def test_should_refuse_to_start_the_bridge_without_its_settings() -> None:
    result = run("bridge", env={"ALGOEDGE_METAAPI_TOKEN": "not-a-token"})
    assert result.returncode == 2
    assert "ALGOEDGE_METAAPI_TOKEN must have three dot-separated parts" in result.stderr
    assert "not-a-token" not in result.stderr
    assert "ALGOEDGE_CREDENTIALS_KEY is not set" in result.stderr


API_BASE = {
    **BASE,
    "ALGOEDGE_JWT_SECRET": "j" * 32,
    "ALGOEDGE_INTERNAL_TOKEN": "i" * 16,
    "ALGOEDGE_CREDENTIALS_KEY": "q3Jm3mzJUCcoQ2d5_-q-dJZxZC-ORG-OOe1xPZ8L4w8=",
}


@pytest.mark.parametrize(
    ("command", "variable", "value", "expected"),
    [
        ("api", "ALGOEDGE_DATABASE_READ_URL", "mysql://u:hunter2@replica/x", "postgresql://"),
        ("api", "ALGOEDGE_DATABASE_READ_URL", "postgresql://u:hunter2@r:5432", "names no database"),
        ("worker", "ALGOEDGE_DATABASE_READ_URL", "postgresql://u:hunter2@r:54x2/x", "invalid port"),
        ("api", "ALGOEDGE_DATABASE_READ_MAX_LAG", "0", "seconds from 1 to 3600"),
        ("worker", "ALGOEDGE_DATABASE_READ_MAX_LAG", "hunter2", "seconds from 1 to 3600"),
    ],
)
def test_should_refuse_bad_read_replica_settings_in_one_line_without_the_value(
    command: str, variable: str, value: str, expected: str
) -> None:
    result = run(command, env={**API_BASE, variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"algoedge {command}: configuration error: {variable} ")
    assert expected in lines[0]
    assert "hunter2" not in result.stderr
