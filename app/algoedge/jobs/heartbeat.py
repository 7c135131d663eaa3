"""The liveness signal of worker and beat: a file touched while the process is healthy (no broker round trip).

``algoedge probe --max-age N`` (the pods' exec probe) only reads the file's age, so a Redis blip
never restarts a healthy worker, and a probe costs a stat, not a Python process talking to the
broker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: How often the worker refreshes the file; probes allow several missed beats.
INTERVAL_SECONDS = 15.0


def touch(path: str) -> None:
    Path(path).touch()


def remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


def age(path: str, *, now: float | None = None) -> float | None:
    """Seconds since the file was last touched; None when it does not exist."""
    try:
        modified = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - modified
