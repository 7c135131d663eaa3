"""Where the monitoring tools are: prometheus, promtool (devtools/monitoring/build.sh) and the
exporters (pgbouncer-exporter from the same build; prometheus-redis-exporter from Debian).

Nothing here starts a build: a cold prometheus build takes minutes, so ``make monitoring-tools``
(a prerequisite of ``make test``) runs it, and a missing tool raises :class:`ToolsMissing` naming
the command that provides it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devtools.buildcache import NotBuilt, cached_bin_dir

BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
#: A directory holding prometheus, promtool and pgbouncer-exporter, instead of build.sh's cache.
BIN_ENV = "ALGOEDGE_MONITORING_BIN"
REDIS_EXPORTER = "prometheus-redis-exporter"
HOW = (
    "run `make monitoring-tools` (devtools/monitoring/build.sh; a cold build takes minutes) "
    f"or point ${BIN_ENV} at a directory holding prometheus, promtool and pgbouncer-exporter"
)


class ToolsMissing(RuntimeError):
    pass


def _cached_bin_dir() -> Path:
    """The bin directory build.sh prints, without letting it start a build."""
    try:
        return cached_bin_dir(BUILD_SCRIPT)
    except NotBuilt as exc:
        if not exc.said:
            raise ToolsMissing(f"prometheus and promtool are not built yet: {HOW}") from None
        raise ToolsMissing(f"{HOW}\nbuild.sh said:\n{exc.said}") from None


def bin_dir() -> Path:
    from_env = os.environ.get(BIN_ENV)
    return Path(from_env) if from_env else _cached_bin_dir()


def tool(name: str) -> Path:
    """``prometheus``, ``promtool`` or ``pgbouncer-exporter``; raises ToolsMissing."""
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise ToolsMissing(f"{path} is not an executable: {HOW}")
    return path


def redis_exporter() -> Path:
    found = shutil.which(REDIS_EXPORTER) or (
        f"/usr/bin/{REDIS_EXPORTER}" if os.access(f"/usr/bin/{REDIS_EXPORTER}", os.X_OK) else None
    )
    if found is None:
        raise ToolsMissing(
            f"{REDIS_EXPORTER} is missing: run `make system-deps` "
            f"(apt-get install {REDIS_EXPORTER}, as root)"
        )
    return Path(found)
