"""Asking a cached build script (devtools/*/build.sh) where its binaries are, never building.

Both build scripts print their bin directory as the last line of stdout and announce each
component on stderr ("build.sh: building …") before compiling it. Tests and ``make dev`` must not
start a build that takes minutes: they ask, and a cold cache stops the script at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


class NotBuilt(RuntimeError):
    """The cache is cold, or the script failed; ``said`` is what it printed on stderr."""

    def __init__(self, said: str) -> None:
        super().__init__(said)
        self.said = said


def cached_bin_dir(build_script: Path) -> Path:
    """The bin directory ``build_script`` prints when everything is cached; NotBuilt otherwise
    (the script is stopped before it compiles anything)."""
    process = subprocess.Popen(
        ["bash", str(build_script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    messages = []
    for line in process.stderr:
        if line.startswith("build.sh: building"):  # the cache is cold
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise NotBuilt("")
        messages.append(line)
    output = process.stdout.read()
    if process.wait() != 0:
        raise NotBuilt("".join(messages))
    return Path(output.strip().splitlines()[-1])
