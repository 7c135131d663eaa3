"""The app as tests, benchmarks and `make dev` start it: a pod's environment, migrations, the command."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from algoedge.config import MigrateSettings
from algoedge.db import Database
from algoedge.db.migrate import load_migrations, migrate
from cryptography.fernet import Fernet


def api_environment(database_url: str, redis_url: str) -> dict[str, str]:
    """The variables the operator gives an API pod, with throwaway secrets."""
    return {
        "ALGOEDGE_DATABASE_URL": database_url,
        "ALGOEDGE_REDIS_URL": redis_url,
        "ALGOEDGE_JWT_SECRET": secrets.token_urlsafe(32),
        "ALGOEDGE_INTERNAL_TOKEN": secrets.token_urlsafe(16),
        "ALGOEDGE_CREDENTIALS_KEY": Fernet.generate_key().decode(),
    }


async def migrated(settings: MigrateSettings) -> None:
    database = await Database.connect(settings.model_copy(update={"db_pool_min": 0}))
    try:
        await migrate(database, load_migrations())
    finally:
        await database.close()


ALGOEDGE = str(Path(sys.executable).with_name("algoedge"))


def command_env(extra: dict[str, str]) -> dict[str, str]:
    """The test's environment without any ALGOEDGE_* leaking in, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")}
    return {**clean, **extra}
