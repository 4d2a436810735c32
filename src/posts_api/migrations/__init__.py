"""Alembic migrations, shipped in the wheel: the only way the schema is made or changed.

``upgrade_to_head`` is what ``posts-api migrate`` and ``posts-api serve`` run. On MySQL/MariaDB
it holds a named lock meanwhile, so hosts starting together migrate one at a time.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from posts_api.core.config import Settings
from posts_api.core.db import create_engine, is_sqlite

MIGRATIONS_DIR = Path(__file__).parent
LOCK_NAME = "posts_api_migrate"
LOCK_WAIT_SECONDS = 60


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at this package's scripts, optionally on an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def upgrade_to_head(settings: Settings) -> None:
    """Migrate the database of ``settings`` to the latest revision.

    Raises SQLAlchemy's ``OperationalError`` (and friends) when the database cannot be reached.
    """
    engine = create_engine(settings, autocommit=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade, not is_sqlite(engine.url))
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, lock: bool) -> None:
    if lock:
        connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": LOCK_NAME, "wait": LOCK_WAIT_SECONDS}
        )
    try:
        command.upgrade(alembic_config(connection), "head")
        connection.commit()
    finally:
        if lock:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
