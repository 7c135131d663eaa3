"""A local Prometheus for a tenant's processes, as the monitoring e2e test and `make dev` run it.

The two exporters run against the local pgBouncer and Redis, and Prometheus scrapes every
component with static configs that add the label contract the operator's PodMonitors add
(``namespace``, ``tenant``, ``component``; docs/monitoring.md), with the tenant's rules loaded
(``devtools.monitoring.rules``). Prometheus is built without its web UI's assets: its HTTP API
(``/api/v1/query``, ``/api/v1/rules``, ``/api/v1/alerts``, ``/api/v1/targets``) is what answers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.monitoring import rules, tools
from devtools.services import LOOPBACK, PgBouncer, RedisServer, free_port


class MonitoringError(RuntimeError):
    pass


def prometheus_config(
    targets: dict[str, str],
    rules_file: Path,
    *,
    namespace: str = rules.DEFAULT_NAMESPACE,
    tenant: str = rules.DEFAULT_TENANT,
    scrape_seconds: int = 1,
) -> dict[str, Any]:
    """One static scrape job per component (``component -> host:port``), the contract's labels."""
    return {
        "global": {
            "scrape_interval": f"{scrape_seconds}s",
            "scrape_timeout": f"{max(1, scrape_seconds) * 900}ms",
            "evaluation_interval": f"{scrape_seconds}s",
        },
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": component,
                "static_configs": [
                    {
                        "targets": [address],
                        "labels": {
                            "namespace": namespace,
                            "tenant": tenant,
                            "component": component,
                        },
                    }
                ],
            }
            for component, address in targets.items()
        ],
    }


def _start(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise MonitoringError(f"{url}: the process exited {process.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise MonitoringError(f"{url} did not answer within {timeout:.0f} s (log {log})")
        time.sleep(0.1)


@dataclass
class LocalMonitoring:
    """Exporters and Prometheus in ``root``; :meth:`start` them, :meth:`stop` them."""

    root: Path
    scrape_seconds: int = 1
    prometheus_port: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    exporters: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.prometheus_port}"

    def start_exporters(self, *, redis: RedisServer, bouncer: PgBouncer) -> dict[str, str]:
        """redis_exporter and the pgBouncer exporter; returns their ``component -> host:port``.

        Raises ToolsMissing when they are not installed/built, MonitoringError when one fails.
        """
        redis_exporter, pgbouncer_exporter = (
            tools.redis_exporter(),
            tools.tool("pgbouncer-exporter"),
        )
        self.root.mkdir(parents=True, exist_ok=True)
        redis_port, pgb_port = free_port(), free_port()
        redis_log = self.root / "redis-exporter.log"
        self.names.append("redis-exporter")
        self.processes.append(
            _start(
                [
                    str(redis_exporter),
                    f"-redis.addr=redis://{LOOPBACK}:{redis.port}",
                    f"-web.listen-address={LOOPBACK}:{redis_port}",
                ],
                redis_log,
                # The password through the environment, not the command line.
                env={"REDIS_PASSWORD": redis.password},
            )
        )
        _wait_http(f"http://{LOOPBACK}:{redis_port}/metrics", self.processes[-1], redis_log)
        # The application role is one of pgBouncer's stats_users (devtools.services.PgBouncer).
        assert bouncer.upstream is not None
        config = self.root / "pgbouncer-exporter.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "exporter_host": LOOPBACK,
                    "exporter_port": pgb_port,
                    "pgbouncers": [
                        {
                            "dsn": f"postgresql://{bouncer.upstream.user}:$(PGBOUNCER_PASS)"
                            f"@{LOOPBACK}:{bouncer.port}/pgbouncer",
                            "exclude_databases": ["pgbouncer"],
                        }
                    ],
                }
            )
        )
        config.chmod(0o600)
        pgb_log = self.root / "pgbouncer-exporter.log"
        self.names.append("pgbouncer-exporter")
        self.processes.append(
            _start(
                [str(pgbouncer_exporter), "--config", str(config)],
                pgb_log,
                env={"PGBOUNCER_PASS": bouncer.upstream.password},
            )
        )
        _wait_http(f"http://{LOOPBACK}:{pgb_port}/metrics", self.processes[-1], pgb_log)
        self.exporters = {
            "redis": f"{LOOPBACK}:{redis_port}",
            "pgbouncer": f"{LOOPBACK}:{pgb_port}",
        }
        return self.exporters

    def start_prometheus(
        self,
        targets: dict[str, str],
        *,
        port: int = 0,
        namespace: str = rules.DEFAULT_NAMESPACE,
        tenant: str = rules.DEFAULT_TENANT,
    ) -> str:
        """Prometheus scraping ``targets`` plus the exporters as ``namespace``/``tenant``, with
        that tenant's rules; returns its URL once ready."""
        prometheus = tools.tool("prometheus")
        self.root.mkdir(parents=True, exist_ok=True)
        rules_file = rules.write(self.root / "rules.yaml", tenant=tenant, namespace=namespace)
        config = self.root / "prometheus.yml"
        all_targets = {**targets, **self.exporters}
        config.write_text(
            yaml.safe_dump(
                prometheus_config(
                    all_targets,
                    rules_file,
                    namespace=namespace,
                    tenant=tenant,
                    scrape_seconds=self.scrape_seconds,
                )
            )
        )
        self.prometheus_port = port or free_port()
        log = self.root / "prometheus.log"
        self.names.append("prometheus")
        self.processes.append(
            _start(
                [
                    str(prometheus),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address={LOOPBACK}:{self.prometheus_port}",
                ],
                log,
            )
        )
        _wait_http(f"{self.url}/-/ready", self.processes[-1], log)
        return self.url

    def problem(self) -> str | None:
        for name, process in zip(self.names, self.processes, strict=True):
            if process.poll() is not None:
                return f"{name} exited with {process.returncode} (log in {self.root})"
        return None

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)
        self.processes.clear()
        self.names.clear()

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s data; raises MonitoringError unless the status is success."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback only
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise MonitoringError(f"{url}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])
