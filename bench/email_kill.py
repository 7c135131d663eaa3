"""How often does killing a worker land in the e-mail window (the server said 250, the row is not yet `sent`)?

Each round: a worker (4 threads) sends a burst of welcome e-mails to a real SMTP server
(aiosmtpd on loopback); the worker is SIGKILLed at a random moment of the burst; then the
deliveries still marked ``sending`` are compared with what the server received. A ``sending``
row whose Message-ID the server already has would be mailed twice once its lease expires (a
window hit); one the server does not have was cut before ``250`` and will be sent once.

Run: ``.venv/bin/python -m bench.email_kill [--rounds 30 --burst 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from algoedge.config import ServiceSettings, load_settings
from algoedge.jobs.mail import message_id
from algoedge.jobs.queue import JobQueue

from bench.api_load import start_stack
from devtools.smtp import SmtpSink

ALGOEDGE = str(Path(sys.executable).with_name("algoedge"))
MAIL_FROM = "AlgoEdge <bench@algoedge.test>"


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")}, **extra}


def flush(url: str) -> None:
    """Each round starts with an empty broker: no task of a killed round is left to run."""
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


async def enqueue(queue: JobQueue, ids: list[int]) -> None:
    """All at once (several publishing threads), so the worker's 4 threads stay busy."""
    await asyncio.gather(*(queue.send_email(delivery) for delivery in ids))


def one_round(
    *,
    env: dict[str, str],
    run_sql: Callable[[str], str],
    smtp: SmtpSink,
    burst: int,
    root: Path,
    kill_after: float | None,
) -> tuple[int, int, int, float]:
    """(sent and marked, cut before 250, inside the window, burst seconds) for one burst.

    ``kill_after`` None: no kill, the burst runs to the end (the warm-up that times a burst).
    """
    run_sql("TRUNCATE email_deliveries")
    smtp.messages.clear()
    out = run_sql(
        "INSERT INTO email_deliveries (key, user_id, kind) SELECT 'welcome:' || id || ':' || "
        f"gen_random_uuid(), id, 'welcome' FROM users ORDER BY id LIMIT {burst} RETURNING id",
    )
    ids = [int(line) for line in out.split() if line.strip().isdigit()]
    heartbeat = root / "heartbeat"
    heartbeat.unlink(missing_ok=True)
    with (root / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [ALGOEDGE, "worker"],
            env=clean_env({**env, "ALGOEDGE_HEARTBEAT_FILE": str(heartbeat)}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while not heartbeat.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    queue = JobQueue.from_settings(load_settings(ServiceSettings, env))
    started = time.monotonic()
    asyncio.run(enqueue(queue, ids))
    queue.close()
    if kill_after is None:
        while len(smtp.received()) < len(ids) and time.monotonic() - started < 120:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        worker.send_signal(signal.SIGTERM)
    else:
        # A moment chosen without looking at the server, so kills are not biased towards
        # the instant right after a 250.
        time.sleep(max(0.0, started + kill_after - time.monotonic()))
        elapsed = time.monotonic() - started
        worker.send_signal(signal.SIGKILL)
    worker.wait()
    received = {str(m["Message-ID"]) for m in smtp.received()}
    rows = run_sql("SELECT key, status FROM email_deliveries")
    sent = before = inside = 0
    for line in rows.splitlines():
        key, _, status = line.partition("|")
        if status == "sent":
            sent += 1
        elif status == "sending":
            if message_id(key, MAIL_FROM) in received:
                inside += 1
            else:
                before += 1
    return sent, before, inside, elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="algoedge-email-kill-"))
    root.chmod(0o755)
    stack = start_stack(root)
    smtp = SmtpSink().start()
    try:
        database = stack.postgres.create_database("bench")
        env = {
            "ALGOEDGE_DATABASE_URL": stack.bouncer.url_for(database),
            "ALGOEDGE_REDIS_URL": stack.redis.url,
            "ALGOEDGE_SMTP_URL": smtp.url,
            "ALGOEDGE_MAIL_FROM": MAIL_FROM,
            "ALGOEDGE_METRICS_PORT": "0",
            "ALGOEDGE_WORKER_CONCURRENCY": "4",
        }
        subprocess.run([ALGOEDGE, "migrate"], env=clean_env(env), check=True, capture_output=True)

        def run_sql(sql: str) -> str:
            return stack.postgres.psql(sql, database=database)

        run_sql(
            "INSERT INTO users (email, name, password_hash) SELECT 'u' || g || '@bench.test', "
            f"'User ' || g, 'x' FROM generate_series(1, {args.burst}) g"
        )
        flush(stack.redis.url)
        *_, burst_seconds = one_round(
            env=env, run_sql=run_sql, smtp=smtp, burst=args.burst, root=root, kill_after=None
        )
        print(f"warm-up: {args.burst} e-mails in {burst_seconds:.2f}s", flush=True)
        totals = [0, 0, 0]
        hit_rounds = 0
        for number in range(1, args.rounds + 1):
            flush(stack.redis.url)
            kill_after = random.uniform(0.2, 0.8) * burst_seconds  # noqa: S311 - benchmark
            sent, before, inside, _ = one_round(
                env=env,
                run_sql=run_sql,
                smtp=smtp,
                burst=args.burst,
                root=root,
                kill_after=kill_after,
            )
            totals = [totals[0] + sent, totals[1] + before, totals[2] + inside]
            hit_rounds += inside > 0
            print(
                f"round {number}/{args.rounds}: killed at {kill_after:.2f}s, {sent} sent, in flight: "
                f"{before} before 250, {inside} inside the window",
                flush=True,
            )
        in_flight = totals[1] + totals[2]
        print()
        print(
            f"kills: {args.rounds}; kills that hit the window: {hit_rounds} ({hit_rounds / args.rounds:.0%})"
        )
        print(
            f"e-mails in flight at a kill: {in_flight}; inside the window: {totals[2]} "
            f"({totals[2] / max(in_flight, 1):.0%}) -> each would be mailed twice"
        )
        print(
            f"e-mails per burst: {args.burst}; duplicates per 1,000 e-mails sent in killed bursts: "
            f"{1000 * totals[2] / max(sum(totals), 1):.1f}"
        )
    finally:
        smtp.stop()
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
