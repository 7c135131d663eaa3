"""The ``algoedge`` command: one entry point per process the images run (api, worker, beat, migrate, bridge)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from algoedge import __version__
from algoedge.config import (
    ApiSettings,
    BeatSettings,
    BridgeSettings,
    ConfigError,
    JobsSettings,
    MigrateSettings,
    WorkerSettings,
    load_settings,
)

log = logging.getLogger("algoedge")

# Exit codes a supervisor can tell apart: bad configuration is not worth restarting quickly.
EXIT_CONFIG = 2
EXIT_FAILED = 1


def _configure_logging(level: str) -> None:
    from algoedge import logs

    logs.configure(level)


def run_api(environ: Mapping[str, str]) -> int:
    settings = load_settings(ApiSettings, environ)
    _configure_logging(settings.log_level)
    from algoedge.api.app import run  # the API's dependencies are not in the bridge image

    run(settings)
    return 0


def run_migrate(environ: Mapping[str, str]) -> int:
    settings = load_settings(MigrateSettings, environ)
    _configure_logging(settings.log_level)
    import psycopg2

    from algoedge.db import Database
    from algoedge.db.migrate import MigrationError, load_migrations, migrate

    async def main() -> int:
        # Two connections: one holds the migration lock's transaction, one applies (see
        # migrate); index builds on big tables take far longer than a request may.
        pool = {"db_pool_min": 0, "db_pool_max": 2, "db_timeout": max(settings.db_timeout, 3600.0)}
        db = await Database.connect(settings.model_copy(update=pool))
        try:
            applied = await migrate(db, load_migrations())
        finally:
            await db.close()
        names = "".join(f"\n  {m.version:04d}_{m.name}" for m in applied)
        print(f"migrations applied: {len(applied)}{names}")
        return 0

    try:
        return asyncio.run(main())
    except (MigrationError, psycopg2.Error) as exc:
        # One line for the person or the Job log reading it; the traceback adds nothing here.
        message = " ".join(str(exc).split())
        print(f"algoedge migrate: failed: {message}", file=sys.stderr)
        return EXIT_FAILED


def run_worker(environ: Mapping[str, str]) -> int:
    settings = load_settings(WorkerSettings, environ)
    _configure_logging(settings.log_level)
    # Kubernetes stops pods with SIGTERM; remapped to SIGQUIT it starts Celery's soft shutdown
    # (running tasks get ALGOEDGE_WORKER_SOFT_SHUTDOWN_TIMEOUT, the rest go back to the queue)
    # instead of a warm shutdown that waits for every task past the grace period. billiard
    # reads it when first imported, so it is set before anything imports Celery.
    os.environ["REMAP_SIGTERM"] = "SIGQUIT"
    from algoedge.jobs.worker import run  # Celery is not in the bridge image

    return run(settings)


def run_beat(environ: Mapping[str, str]) -> int:
    settings = load_settings(BeatSettings, environ)
    _configure_logging(settings.log_level)
    from algoedge.jobs.beat import run

    return run(settings)


def run_bridge(environ: Mapping[str, str]) -> int:
    settings = load_settings(BridgeSettings, environ)
    _configure_logging(settings.log_level)
    from algoedge.bridge.main import run  # the SDK is only in the bridge image

    return run(settings)


def run_probe(environ: Mapping[str, str], max_age: float) -> int:
    """Exit 0 while the worker's or beat's heartbeat file is fresh; cheap (no Celery, no broker)."""
    from algoedge.jobs import heartbeat

    path = environ.get(
        "ALGOEDGE_HEARTBEAT_FILE", str(JobsSettings.model_fields["heartbeat_file"].default)
    )
    age = heartbeat.age(path)
    if age is None:
        print(f"algoedge probe: {path} does not exist (not started, or stopping)", file=sys.stderr)
        return EXIT_FAILED
    if age > max_age:
        print(f"algoedge probe: {path} is {age:.0f}s old (limit {max_age:.0f}s)", file=sys.stderr)
        return EXIT_FAILED
    return 0


COMMANDS: dict[str, tuple[str, Callable[[Mapping[str, str]], int]]] = {
    "api": ("serve the HTTP API, /metrics and socket.io on ALGOEDGE_HTTP_PORT", run_api),
    "worker": ("run a Celery worker (reports, e-mail, notifications)", run_worker),
    "beat": ("run Celery beat: report runs and the sweeper (one per tenant)", run_beat),
    "migrate": ("apply database migrations (safe to run from several pods)", run_migrate),
    "bridge": (
        "run the MetaAPI bridge: keep the linked accounts this replica owns connected",
        run_bridge,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="algoedge",
        description="AlgoEdge processes. Settings come from ALGOEDGE_* environment variables "
        "(see docs/architecture.md).",
    )
    parser.add_argument("--version", action="version", version=f"algoedge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    probe = sub.add_parser(
        "probe",
        help=PROBE_HELP,
        description=PROBE_HELP + " (ALGOEDGE_HEARTBEAT_FILE; exit 0 fresh, 1 stale or missing)",
    )
    probe.add_argument(
        "--max-age", type=_seconds, required=True, help="seconds the heartbeat may be old"
    )
    return parser


PROBE_HELP = "check that the worker's or beat's heartbeat file is fresh (the pods' exec probe)"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be above 0 and at most 86400")
    return value


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    if args.command == "probe":
        return run_probe(env, args.max_age)
    _, command = COMMANDS[args.command]
    try:
        return command(env)
    except ConfigError as exc:
        print(f"algoedge {args.command}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
