"""The operator's pgBouncer configuration of a monitored tenant, run by a real pgBouncer: the
exporter's stats user logs into the admin console with the connection string the operator gives
the exporter, may read statistics and nothing more, and the app's login is unchanged."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from algoedge_operator.builders.common import PGBOUNCER_PORT
from algoedge_operator.builders.pgbouncer import (
    CONFIG_KEY,
    EXPORTER_URL_KEY,
    USERLIST_KEY,
    pgbouncer_config,
    pgbouncer_secret_values,
)
from algoedge_operator.model import DatabaseTarget

from devtools.services import PgBouncer, PostgresServer, _hand_over, postgres_bin_dir
from tests.unit.operator.support import tenant

STATS_PASSWORD = "generated-stats-password-with-a-quote'-and-%"


@dataclass
class OperatorPgBouncer(PgBouncer):
    """pgBouncer started with the operator's own pgbouncer.ini and userlist; only what a pod
    gives it differently is replaced (its port, the userlist's path, a pid file)."""

    ini: str = ""
    userlist: str = ""

    def _write_config(self) -> None:
        ini = (
            self.ini.replace(f"listen_port = {PGBOUNCER_PORT}", f"listen_port = {self.port}")
            .replace("listen_addr = *", "listen_addr = 127.0.0.1")
            .replace(
                f"auth_file = /etc/pgbouncer/secret/{USERLIST_KEY}",
                f"auth_file = {self.root / USERLIST_KEY}",
            )
        )
        (self.root / USERLIST_KEY).write_text(self.userlist)
        (self.root / CONFIG_KEY).write_text(ini + f"pidfile = {self.root / 'pgbouncer.pid'}\n")
        for name in (USERLIST_KEY, CONFIG_KEY):
            (self.root / name).chmod(0o600)
        _hand_over(self.root)


@pytest.fixture
def monitored_pgbouncer(
    services_root: Path, postgres: PostgresServer
) -> Iterator[tuple[OperatorPgBouncer, dict[str, str]]]:
    monitored = tenant(monitoring={"enabled": True})
    database = DatabaseTarget(
        host="127.0.0.1",
        port=postgres.port,
        dbname=postgres.database,
        user=postgres.user,
        password=postgres.password,
        sslmode="disable",
    )
    values = pgbouncer_secret_values(monitored, database, stats_password=STATS_PASSWORD)
    # Under the services' root, which the unprivileged user pgBouncer runs as can reach.
    root = services_root / "operator-pgbouncer"
    bouncer = OperatorPgBouncer(
        root=root,
        upstream=postgres,
        ini=pgbouncer_config(monitored, database),
        userlist=values[USERLIST_KEY],
    )
    bouncer.start()
    yield bouncer, values
    bouncer.stop()


def psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(postgres_bin_dir() / "psql"), "-X", "-A", "-t", "-c", sql, url],
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_the_exporter_reads_the_admin_console_as_stats_user_only(
    monitored_pgbouncer: tuple[OperatorPgBouncer, dict[str, str]],
) -> None:
    bouncer, values = monitored_pgbouncer
    exporter_url = values[EXPORTER_URL_KEY].replace(
        f"127.0.0.1:{PGBOUNCER_PORT}", f"127.0.0.1:{bouncer.port}"
    )
    pools = psql(exporter_url, "SHOW POOLS")
    assert pools.returncode == 0, pools.stderr
    assert psql(exporter_url, "SHOW STATS").returncode == 0
    # A stats user may look, never act.
    refused = psql(exporter_url, "PAUSE")
    assert refused.returncode != 0
    assert "admin access needed" in refused.stderr
    wrong = exporter_url.replace("quote", "guess")
    assert psql(wrong, "SHOW POOLS").returncode != 0
    # The app still logs in through the same pgBouncer.
    app = psql(bouncer.url, "SELECT 1")
    assert (app.returncode, app.stdout.strip()) == (0, "1")
    assert Path(bouncer.root / CONFIG_KEY).read_text().count("stats_users = ") == 1
