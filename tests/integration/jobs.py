"""Support for the jobs tests: worker and beat processes, a recording SMTP server, seeded trading data."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from devtools.app import ALGOEDGE, command_env
from devtools.services import PostgresServer, free_port

T = TypeVar("T")


def poll(what: str, check: Callable[[], T | None], *, timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


async def eventually(what: str, check: Callable[[], T | None], *, within: float = 30.0) -> T:
    """:func:`poll` for async tests: the event loop keeps running while it waits."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


@dataclass
class JobProcess:
    """One `algoedge worker` or `algoedge beat` process (a pod), its log and heartbeat file."""

    command: str
    env: dict[str, str]
    name: str
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="algoedge-job-")))
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def heartbeat(self) -> Path:
        return self.folder / "heartbeat"

    def start(self) -> JobProcess:
        self.metrics_port = free_port()
        env = {
            **self.env,
            "ALGOEDGE_HEARTBEAT_FILE": str(self.heartbeat),
            "ALGOEDGE_METRICS_PORT": str(self.metrics_port),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [ALGOEDGE, self.command], env=command_env(env), stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> JobProcess:
        marker = " ready." if self.command == "worker" else "heartbeat"

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.log()}")
            if marker == "heartbeat":
                return self.heartbeat.exists()
            return marker in self.log() and self.heartbeat.exists()

        poll(f"{self.name} to be ready (log {self.log_path})", ready, timeout=timeout)
        return self

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def sample(self, name: str, **labels: str) -> float:
        """The sum of metric samples called ``name`` whose labels include ``labels``."""
        total = 0.0
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def probe(self, max_age: float) -> int:
        env = command_env({"ALGOEDGE_HEARTBEAT_FILE": str(self.heartbeat)})
        return subprocess.run(
            [ALGOEDGE, "probe", "--max-age", str(max_age)],
            env=env,
            capture_output=True,
            check=False,
        ).returncode

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.name} ignored SIGTERM for {timeout}s:\n{self.log()}"
            ) from None


@contextlib.contextmanager
def running(*processes: JobProcess) -> Iterator[tuple[JobProcess, ...]]:
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_ready()
        yield processes
    finally:
        for process in processes:
            if process.process is not None and process.process.poll() is None:
                with contextlib.suppress(AssertionError):
                    process.terminate()
        for process in processes:
            assert "Traceback" not in process.log() or "PermanentFailure" in process.log(), (
                process.log()
            )


@dataclass
class Trading:
    """Rows written straight into the test database with psql (fast, no API round trips)."""

    postgres: PostgresServer
    database: str

    def sql(self, statement: str) -> str:
        return self.postgres.psql(statement, database=self.database).strip()

    def rows(self, query: str) -> list[list[str]]:
        out = self.sql(query)
        return [line.split("|") for line in out.splitlines() if line]

    def value(self, query: str) -> str:
        return self.sql(query)

    def trader(self, email: str, *, email_reports: bool = False) -> int:
        return int(
            self.sql(
                "INSERT INTO users (email, name, password_hash, email_reports) "
                f"VALUES ('{email}', 'Trader {email.split('@')[0]}', 'x', {str(email_reports).lower()}) "
                "RETURNING id"
            ).splitlines()[0]
        )

    def account(self, user_id: int, login: str = "1001") -> int:
        return int(
            self.sql(
                "INSERT INTO mt_accounts (user_id, login, server, platform, encrypted_password) "
                f"VALUES ({user_id}, '{login}', 'Demo', 'mt5', 'x') RETURNING id"
            ).splitlines()[0]
        )

    def trade(
        self, account_id: int, *, profit: str, closed_at: str, symbol: str = "EURUSD"
    ) -> None:
        self.sql(
            "INSERT INTO trades (account_id, user_id, symbol, side, volume, open_price, "
            "close_price, profit, opened_at, closed_at) SELECT id, user_id, "
            f"'{symbol}', 'buy', 1, 1.1, 1.2, {profit}, '{closed_at}'::timestamptz - interval '1 hour', "
            f"'{closed_at}' FROM mt_accounts WHERE id = {account_id}"
        )

    def welcome_delivery(self, user_id: int) -> int:
        """A recorded, not yet sent welcome e-mail (what register writes)."""
        return int(
            self.sql(
                "INSERT INTO email_deliveries (key, user_id, kind) VALUES "
                f"('welcome:{user_id}', {user_id}, 'welcome') RETURNING id"
            ).splitlines()[0]
        )

    def delivery_status(self, delivery_id: int) -> str:
        return self.value(f"SELECT status FROM email_deliveries WHERE id = {delivery_id}")

    def pending_report(self, user_id: int, kind: str, period_start: str, days: int = 1) -> int:
        return int(
            self.sql(
                "INSERT INTO reports (user_id, kind, period_start, period_end) VALUES "
                f"({user_id}, '{kind}', '{period_start}', '{period_start}'::timestamptz + interval '{days} day') "
                "RETURNING id"
            ).splitlines()[0]
        )

    def payload(self, report_id: int) -> Any:
        return json.loads(self.value(f"SELECT payload FROM reports WHERE id = {report_id}"))


def decoded_queue(messages: list[bytes]) -> list[tuple[str, list[Any]]]:
    """(task name, args) of raw kombu messages from a Redis list."""
    out = []
    for raw in messages:
        envelope = json.loads(raw)
        body = json.loads(base64.b64decode(envelope["body"]))
        out.append((envelope["headers"]["task"], body[0]))
    return out
