"""Throwaway PostgreSQL (and streaming replicas of it), Redis and pgBouncer servers on free loopback ports, for tests and `make dev`.

Each server lives in a folder of its own (data, config, log, pid file) and is started and stopped
for real with the Debian binaries. PostgreSQL and pgBouncer refuse to run as root, so when this
runs as root they run as the ``postgres`` system user (created by Debian's postgresql package)
and their folder is handed to that user. Only the standard library is used, so the bridge's
virtual environment can import this module too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

LOOPBACK = "127.0.0.1"
SERVICE_USER = "postgres"
START_TIMEOUT_SECONDS = 30.0


class ServiceError(RuntimeError):
    """A server would not start or stop; the message points at its log."""


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on loopback, otherwise a port the kernel picks."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers themselves do: a port in TIME_WAIT from a past run is still usable.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, candidate))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
            return port
    raise ServiceError("no free loopback port")  # pragma: no cover - bind(0) does not fail


def wait_for_port(port: int, *, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listens on {LOOPBACK}:{port} after {timeout:.0f}s; see {log}")


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], *, timeout: float = 30.0, log: Path | None = None
) -> None:
    """Wait until ``url`` answers 2xx; ServiceError (naming ``log``) when ``process`` exits first or time runs out."""
    where = f"; see {log}" if log is not None else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{url}: the process exited with {process.returncode}{where}")
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - loopback only
            return
        except OSError:
            time.sleep(0.1)
    raise ServiceError(f"{url} did not answer within {timeout:.0f}s{where}")


def _as_root() -> bool:
    return os.geteuid() == 0


def _hand_over(path: Path) -> None:
    """Give ``path`` (recursively) to the service user when we are root; a no-op otherwise."""
    if not _as_root():
        return
    user = pwd.getpwnam(SERVICE_USER)
    for entry in [path, *path.rglob("*")]:
        os.chown(entry, user.pw_uid, user.pw_gid)


def _service_command(argv: Sequence[str]) -> list[str]:
    """Prefix with runuser when root, because postgres and pgbouncer refuse to run as root."""
    return ["runuser", "-u", SERVICE_USER, "--", *argv] if _as_root() else list(argv)


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin folder (Debian keeps them versioned)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4])
    )
    if not found:
        raise ServiceError("PostgreSQL server binaries not found; run `make system-deps`")
    return Path(found[-1]).parent


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise ServiceError(f"{name} not found; run `make system-deps`")
    return path


def _kill_pidfile(pidfile: Path) -> None:
    """Stop whatever a previous, killed run left behind in this folder."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


@dataclass
class PostgresServer:
    """A PostgreSQL cluster with one application role and database, reachable over TCP only.

    It can be the primary of a :class:`StreamingReplica`: ``wal_level=replica`` and WAL senders
    are on, and initdb's pg_hba.conf already lets replication connections in from 127.0.0.1
    (SCRAM, like every TCP connection here).
    """

    root: Path
    port: int = 0
    user: str = "algoedge"
    database: str = "algoedge"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    #: ``shared_preload_libraries``, e.g. ``("pg_stat_statements",)`` to count statements.
    preload: tuple[str, ...] = ()
    #: Addresses to listen on besides loopback (the real node's bridge gateway) and the networks
    #: allowed in from there (SCRAM, like loopback), e.g. ``(("10.244.1.1",), ("10.244.1.0/24",))``.
    listen_also: tuple[str, ...] = ()
    clients_also: tuple[str, ...] = ()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return self.url_at(LOOPBACK)

    def url_at(self, host: str) -> str:
        """:attr:`url` through another of its addresses (``listen_also``), e.g. the one pods reach."""
        return f"postgresql://{self.user}:{self.password}@{host}:{self.port}/{self.database}"

    @property
    def superuser_url(self) -> str:
        return f"postgresql://postgres:{self.superuser_password}@{LOOPBACK}:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> list[str]:
        return _service_command([str(postgres_bin_dir() / tool), *args])

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(argv)} failed: {result.stderr.strip()}")

    def _create_cluster(self) -> None:
        pwfile = self.root / "superuser.pw"
        pwfile.write_text(self.superuser_password + "\n")
        _hand_over(self.root)
        self._run(
            self._pg(
                "initdb",
                f"--pgdata={self.data_dir}",
                "--username=postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            )
        )
        pwfile.unlink()

    def _allow_clients(self) -> None:
        """``clients_also`` in pg_hba.conf, at every start: a cluster made by an earlier run
        without them (`make dev`, then `make dev REAL_NODE=1`) lets them in too."""
        hba_file = self.data_dir / "pg_hba.conf"
        present = hba_file.read_text().splitlines()
        missing = [f"host all all {n} scram-sha-256" for n in self.clients_also]
        missing = [line for line in missing if line not in present]
        if missing:
            with hba_file.open("a") as hba:
                hba.write("".join(f"{line}\n" for line in missing))

    def _options(self) -> list[str]:
        options = [
            f"-c listen_addresses={','.join((LOOPBACK, *self.listen_also))}",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.root}",
            # A standby needs at least its primary's max_connections: every cluster has this.
            "-c max_connections=300",
            # Throwaway data: durability costs time and buys nothing here.
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            # Postgres' defaults, said here because StreamingReplica relies on them.
            "-c wal_level=replica",
            "-c max_wal_senders=10",
        ]
        if self.preload:
            options.append(f"-c shared_preload_libraries={','.join(self.preload)}")
        return options

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._create_cluster()
        elif (self.data_dir / "postmaster.pid").exists():
            # A killed earlier run: stop it (or clear its stale pid file) before starting.
            subprocess.run(
                self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "stop"),
                capture_output=True,
                check=False,
            )
        self._allow_clients()
        _hand_over(self.root)
        options = " ".join(self._options())
        self._run(
            self._pg(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(int(START_TIMEOUT_SECONDS)),
                "start",
            )
        )
        if fresh:
            self._bootstrap()
        return self

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL as the superuser over the private Unix socket; return psql's output."""
        argv = self._pg(
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.root),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        )
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _bootstrap(self) -> None:
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """A new empty database owned by the application role; returns its name."""
        self.psql(f"CREATE DATABASE {name} OWNER {self.user}")
        return name

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run(self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"))


REPLICATION_ROLE = "replicator"


@dataclass
class StreamingReplica(PostgresServer):
    """A hot standby of ``primary``: ``pg_basebackup -R`` into its own folder, then streaming WAL
    through a replication slot (so the primary keeps what a stopped replica still needs).

    It has the primary's roles, databases and settings (the application role's password too).
    Stop and start it like any server; ``psql("SELECT pg_wal_replay_pause()")`` makes it lag.
    """

    primary: PostgresServer | None = None
    replication_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    #: The primary's replication slot this replica streams from.
    slot: str = field(default_factory=lambda: f"replica_{secrets.token_hex(4)}")

    def __post_init__(self) -> None:
        if self.primary is None:
            raise ServiceError("StreamingReplica needs a primary PostgresServer")
        primary = self.primary
        self.user, self.database, self.password = primary.user, primary.database, primary.password
        self.superuser_password, self.preload = primary.superuser_password, primary.preload

    def _create_cluster(self) -> None:
        assert self.primary is not None
        primary = self.primary
        # A role that may replicate and nothing else; recreated with this replica's password.
        primary.psql(
            f"DROP ROLE IF EXISTS {REPLICATION_ROLE}; "
            f"CREATE ROLE {REPLICATION_ROLE} REPLICATION LOGIN "
            f"PASSWORD '{self.replication_password}'"
        )
        _hand_over(self.root)
        # -R writes standby.signal and primary_conninfo (with this password: the folder is the
        # service user's alone); -C -S creates the slot the standby streams from.
        self._run(
            _service_command(
                [
                    "env",
                    f"PGPASSWORD={self.replication_password}",
                    str(postgres_bin_dir() / "pg_basebackup"),
                    f"--pgdata={self.data_dir}",
                    f"--host={LOOPBACK}",
                    f"--port={primary.port}",
                    f"--username={REPLICATION_ROLE}",
                    "--write-recovery-conf",
                    "--wal-method=stream",
                    "--create-slot",
                    f"--slot={self.slot}",
                    "--checkpoint=fast",
                    "--no-password",
                ]
            )
        )

    def _options(self) -> list[str]:
        return [*super()._options(), "-c hot_standby=on"]

    def _bootstrap(self) -> None:
        """Nothing: the roles and databases came with the base backup."""

    def wait_caught_up(self, *, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Wait until the replica has replayed every transaction the primary had committed when
        this was called."""
        assert self.primary is not None
        # The servers run with synchronous_commit=off: a commit can be acknowledged before its
        # WAL is written. A synchronous commit of a transaction that wrote WAL (a transactional
        # logical message: no table needed) flushes everything inserted before it.
        self.primary.psql(
            "SET synchronous_commit = on; "
            "SELECT pg_logical_emit_message(true, 'algoedge', 'caught up?')"
        )
        target = self.primary.psql("SELECT pg_current_wal_flush_lsn()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t":
                return
            time.sleep(0.05)
        raise ServiceError(f"the replica did not replay up to {target} in {timeout:.0f}s")


@dataclass
class _Process:
    """A foreground server process in its own session, with a pid file for crash clean-up."""

    root: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pid_file(self) -> Path:
        return self.root / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def _spawn(self, argv: list[str], port: int) -> None:
        _kill_pidfile(self.pid_file)
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.pid_file.write_text(f"{self.process.pid}\n")
        try:
            wait_for_port(port, timeout=START_TIMEOUT_SECONDS, log=self.log_file)
        except ServiceError:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise ServiceError(
                f"{argv[0]} exited with {self.process.returncode}; see {self.log_file}"
            )

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # runuser forwards SIGTERM to the server, which shuts down cleanly.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        self.pid_file.unlink(missing_ok=True)

    def freeze(self) -> None:
        """Hang the way a stalled server hangs: SIGSTOP. Connections are still accepted (by the
        kernel) and kept open, but nothing is ever answered until :meth:`thaw`."""
        if self.process is None or self.process.poll() is not None:
            raise ServiceError(f"{type(self).__name__} is not running")
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Undo :meth:`freeze` (SIGCONT): the server answers what waited, then goes on."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Die the way a crashed or OOM-killed server dies: SIGKILL, no clean shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        self.pid_file.unlink(missing_ok=True)


@dataclass
class RedisServer(_Process):
    """redis-server with a password and no persistence."""

    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.root / "redis.conf"
        # The password goes in a file, not on the command line where `ps` shows it.
        config.write_text(
            "\n".join(
                [
                    f"bind {LOOPBACK}",
                    f"port {self.port}",
                    f"dir {self.root}",
                    f"requirepass {self.password}",
                    'save ""',
                    "appendonly no",
                    "daemonize no",
                    "protected-mode yes",
                    "",
                ]
            )
        )
        config.chmod(0o600)
        self._spawn([_tool("redis-server"), str(config)], self.port)
        return self


READ_ALIAS_SUFFIX = "_ro"


@dataclass
class PgBouncer(_Process):
    """pgBouncer in front of ``upstream``, transaction pooling, SCRAM auth like the cluster's.

    With a ``replica``, each database also has a read alias ``<db>_ro`` on the replica, as the
    operator's pgBouncer has for the tenant's database (:meth:`read_url_for`).
    """

    upstream: PostgresServer | None = None
    replica: PostgresServer | None = None
    port: int = 0
    pool_mode: str = "transaction"
    default_pool_size: int = 20
    max_client_conn: int = 1000
    #: Databases with a read alias on the replica.
    read_databases: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.upstream is not None
        return self.url_for(self.upstream.database)

    def url_for(self, database: str) -> str:
        """The application role's URL for ``database`` through this pgBouncer."""
        assert self.upstream is not None
        up = self.upstream
        return f"postgresql://{up.user}:{up.password}@{LOOPBACK}:{self.port}/{database}"

    @property
    def read_url(self) -> str:
        assert self.upstream is not None
        return self.read_url_for(self.upstream.database)

    def read_url_for(self, database: str) -> str:
        """The URL of ``database``'s read alias on the replica. An alias other than the upstream
        database's is added (and the running pgBouncer reloaded) the first time it is asked for,
        so ``database`` must exist on the replica by then (``StreamingReplica.wait_caught_up``)."""
        if self.replica is None:
            raise ServiceError("this pgBouncer has no replica")
        if database not in self._read_databases():
            self.read_databases.append(database)
            if self.process is not None:
                self._write_config()
                self._reload(database)
        return self.url_for(database + READ_ALIAS_SUFFIX)

    def _read_databases(self) -> list[str]:
        assert self.upstream is not None
        return list(dict.fromkeys([self.upstream.database, *self.read_databases]))

    def _database_lines(self) -> list[str]:
        assert self.upstream is not None
        up = self.upstream
        lines = [f"{up.database} = host={LOOPBACK} port={up.port} dbname={up.database}"]
        if self.replica is not None:
            for name in self._read_databases():
                lines.append(
                    f"{name}{READ_ALIAS_SUFFIX} = host={LOOPBACK} port={self.replica.port} "
                    f"dbname={name}"
                )
        # Any other database name passes through too (tests make their own).
        return [*lines, f"* = host={LOOPBACK} port={up.port}"]

    def _reload(self, database: str) -> None:
        """SIGHUP to pgBouncer itself (under root, runuser would not pass it on), then wait until
        ``database``'s read alias answers."""
        pid = int((self.root / "pgbouncer.pid").read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
        assert self.upstream is not None
        up = self.upstream
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        argv = [
            str(postgres_bin_dir() / "psql"),
            "-X",
            "-q",
            "-c",
            "SELECT 1",
            f"postgresql://{up.user}@{LOOPBACK}:{self.port}/{database}{READ_ALIAS_SUFFIX}",
        ]
        env = {**os.environ, "PGPASSWORD": up.password, "PGCONNECT_TIMEOUT": "5"}
        while subprocess.run(argv, env=env, capture_output=True, check=False).returncode:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"read alias of {database} missing after reload; see {self.log_file}"
                )
            time.sleep(0.05)

    def start(self) -> PgBouncer:
        if self.upstream is None:
            raise ServiceError("PgBouncer needs an upstream PostgresServer")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._write_config()
        # A pid file left by a killed run would make pgBouncer refuse to start.
        (self.root / "pgbouncer.pid").unlink(missing_ok=True)
        self._spawn(
            _service_command([_tool("pgbouncer"), str(self.root / "pgbouncer.ini")]), self.port
        )
        return self

    def _write_config(self) -> None:
        assert self.upstream is not None
        up = self.upstream
        (self.root / "userlist.txt").write_text(f'"{up.user}" "{up.password}"\n')
        (self.root / "pgbouncer.ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    *self._database_lines(),
                    "[pgbouncer]",
                    f"listen_addr = {LOOPBACK}",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = scram-sha-256",
                    f"auth_file = {self.root / 'userlist.txt'}",
                    f"pool_mode = {self.pool_mode}",
                    f"default_pool_size = {self.default_pool_size}",
                    f"max_client_conn = {self.max_client_conn}",
                    "ignore_startup_parameters = extra_float_digits,options",
                    # Lets the application role read SHOW POOLS/DATABASES (tests, metrics).
                    f"stats_users = {up.user}",
                    # Where _reload finds the process to send SIGHUP to.
                    f"pidfile = {self.root / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        for name in ("userlist.txt", "pgbouncer.ini"):
            (self.root / name).chmod(0o600)
        _hand_over(self.root)
