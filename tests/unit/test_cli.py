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


@pytest.mark.parametrize("command", ["worker", "beat", "bridge"])
def test_should_say_an_unfinished_command_is_not_implemented(command: str) -> None:
    result = run(command)
    assert result.returncode == 3
    assert "not yet implemented" in result.stderr
