"""Bridge processes as tests, benchmarks and `make dev` start them: a pod's environment and the command."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devtools.app import command_env
from devtools.services import free_port

#: The bridge's console script in the bridge environment (the SDK and python-socketio 4).
BRIDGE_VENV_ALGOEDGE = Path(".venv-bridge/bin/algoedge")


def bridge_environment(
    *,
    database_url: str,
    redis_url: str,
    credentials_key: str,
    metaapi_url: str,
    metaapi_token: str,
    pod_name: str,
    lease_ttl: float = 30.0,
    max_concurrent_syncs: int = 10,
    metrics_port: int = 0,
) -> dict[str, str]:
    """The variables the operator gives a bridge pod, aimed at a local MetaAPI simulator."""
    return {
        "ALGOEDGE_DATABASE_URL": database_url,
        "ALGOEDGE_REDIS_URL": redis_url,
        "ALGOEDGE_CREDENTIALS_KEY": credentials_key,
        "ALGOEDGE_METAAPI_URL": metaapi_url,
        "ALGOEDGE_METAAPI_TOKEN": metaapi_token,
        "ALGOEDGE_BRIDGE_POD_NAME": pod_name,
        "ALGOEDGE_BRIDGE_LEASE_TTL": str(lease_ttl),
        "ALGOEDGE_BRIDGE_MAX_CONCURRENT_SYNCS": str(max_concurrent_syncs),
        "ALGOEDGE_BRIDGE_POLL_SECONDS": "1",
        "ALGOEDGE_METRICS_PORT": str(metrics_port),
    }


@dataclass
class BridgeProcess:
    """One `algoedge bridge` process; its log is a file in ``workdir``."""

    name: str
    env: dict[str, str]
    workdir: Path
    executable: str = field(default_factory=lambda: str(Path(sys.executable).with_name("algoedge")))
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> BridgeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.metrics_port = free_port()
        env = {**self.env, "ALGOEDGE_METRICS_PORT": str(self.metrics_port)}
        with self.log_file.open("ab") as log:
            # Its own working directory: the SDK writes ./.metaapi there.
            cwd = self.workdir / self.name
            cwd.mkdir(exist_ok=True)
            self.process = subprocess.Popen(
                [self.executable, "bridge"],
                env=command_env(env),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait (the bridge releases its leases); SIGKILL if it overstays."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
