"""`make dev`: Postgres, Redis and pgBouncer in .run/, migrations, then the API; Ctrl-C stops it all.

Data and generated secrets persist in the folder between runs, so a second `make dev` finds the
same users. The variables the API got are written to ``<dir>/env`` so a shell can
``source .run/env`` and run ``algoedge`` commands against the same services.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from cryptography.fernet import Fernet

from tests.services import LOOPBACK, PgBouncer, PostgresServer, RedisServer, free_port

# Stable ports when they are free, so bookmarks and `psql` history keep working between runs.
PREFERRED_PORTS = {"postgres": 55432, "pgbouncer": 56432, "redis": 56379, "api": 8080}


def _secrets(folder: Path) -> dict[str, str]:
    """Passwords and keys made on the first run and reused after (the data outlives a run)."""
    path = folder / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    makers: dict[str, Callable[[], str]] = {
        "postgres": lambda: secrets.token_urlsafe(16),
        "postgres_superuser": lambda: secrets.token_urlsafe(16),
        "redis": lambda: secrets.token_urlsafe(16),
        "jwt": lambda: secrets.token_urlsafe(32),
        "internal": lambda: secrets.token_urlsafe(24),
        "credentials": lambda: Fernet.generate_key().decode(),
    }
    # Keys added by newer versions of this script are made now; existing ones are kept.
    made = {name: stored.get(name) or make() for name, make in makers.items()}
    if made != stored:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(made, indent=2))
        path.chmod(0o600)
    return made


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"dev: the API exited with {process.returncode}; see its output above")
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - loopback only
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"dev: the API did not answer {url} within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.dev", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".run"), help="state folder")
    args = parser.parse_args(argv)
    root: Path = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # postgres and pgbouncer run as the postgres user when we are root
    keys = _secrets(root)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    postgres = PostgresServer(
        root=root / "postgres",
        port=free_port(PREFERRED_PORTS["postgres"]),
        password=keys["postgres"],
        superuser_password=keys["postgres_superuser"],
    )
    redis = RedisServer(
        root=root / "redis", port=free_port(PREFERRED_PORTS["redis"]), password=keys["redis"]
    )
    bouncer = PgBouncer(
        root=root / "pgbouncer", upstream=postgres, port=free_port(PREFERRED_PORTS["pgbouncer"])
    )
    api: subprocess.Popen[bytes] | None = None
    try:
        postgres.start()
        redis.start()
        bouncer.start()
        api_port = free_port(PREFERRED_PORTS["api"])
        env = {
            "ALGOEDGE_DATABASE_URL": bouncer.url,
            "ALGOEDGE_REDIS_URL": redis.url,
            "ALGOEDGE_JWT_SECRET": keys["jwt"],
            "ALGOEDGE_INTERNAL_TOKEN": keys["internal"],
            "ALGOEDGE_CREDENTIALS_KEY": keys["credentials"],
            "ALGOEDGE_HTTP_HOST": LOOPBACK,
            "ALGOEDGE_HTTP_PORT": str(api_port),
        }
        env_file = root / "env"
        env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        env_file.chmod(0o600)
        algoedge = str(Path(sys.executable).with_name("algoedge"))
        child_env = {**os.environ, **env}
        subprocess.run([algoedge, "migrate"], env=child_env, check=True)
        # Its own session: Ctrl-C reaches only us, and we stop the API with SIGTERM like a kubelet.
        api = subprocess.Popen([algoedge, "api"], env=child_env, start_new_session=True)
        _wait_healthy(f"http://{LOOPBACK}:{api_port}/readyz", api)
        print(
            "\nAlgoEdge dev stack is up (Ctrl-C stops everything):\n"
            f"  API         http://{LOOPBACK}:{api_port}  (/api/v1/openapi.json, /metrics)\n"
            f"  pgBouncer   {LOOPBACK}:{bouncer.port}  (transaction pooling; the API uses it)\n"
            f"  PostgreSQL  {LOOPBACK}:{postgres.port}  (logs: {postgres.log_file})\n"
            f"  Redis       {LOOPBACK}:{redis.port}\n"
            f"  variables   source {env_file}\n",
            flush=True,
        )
        while not stop.wait(0.5):
            if api.poll() is not None:
                print(f"dev: the API exited with {api.returncode}", file=sys.stderr)
                return 1
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"dev: {exc}", file=sys.stderr)
        return 1
    finally:
        if api is not None and api.poll() is None:
            api.send_signal(signal.SIGTERM)
            api.wait(timeout=30)
        bouncer.stop()
        redis.stop()
        postgres.stop()
        print("dev: stopped API, pgBouncer, Redis and PostgreSQL", flush=True)


if __name__ == "__main__":
    sys.exit(main())
