"""Alembic migrations, shipped in the wheel: the only way the schema is made or changed.

``upgrade_to_head`` is what ``posts-api migrate`` and ``posts-api serve`` run. On MySQL/MariaDB
(a named lock) and PostgreSQL (an advisory lock) it holds a lock meanwhile, so hosts starting
together migrate one at a time.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import NamedTuple

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from posts_api.core.config import Settings
from posts_api.core.db import create_engine

MIGRATIONS_DIR = Path(__file__).parent
LOCK_NAME = "posts_api_migrate"
LOCK_WAIT_SECONDS = 60


class Lock(NamedTuple):
    """How one database takes and releases the migration lock."""

    take: str
    release: str
    parameters: dict[str, object]


_NAMED_LOCK = Lock(
    "SELECT GET_LOCK(:name, :wait)",
    "SELECT RELEASE_LOCK(:name)",
    {"name": LOCK_NAME, "wait": LOCK_WAIT_SECONDS},
)
# SQLite needs none: its writers already take turns on the file. PostgreSQL names advisory locks
# by a number, the same on every host; waiting for it is bounded by the caller's timeout.
LOCKS = {
    "mysql": _NAMED_LOCK,
    "mariadb": _NAMED_LOCK,
    "postgresql": Lock(
        "SELECT pg_advisory_lock(:key)",
        "SELECT pg_advisory_unlock(:key)",
        {"key": zlib.crc32(LOCK_NAME.encode())},
    ),
}


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
            await connection.run_sync(_upgrade)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection) -> None:
    """Upgrade under the database's migration lock.

    The lock belongs to the connection: if the upgrade fails, closing the connection releases
    it (an explicit release could not run on PostgreSQL inside the failed transaction anyway).
    """
    lock = LOCKS.get(connection.dialect.name)
    if lock is not None:
        connection.execute(text(lock.take), lock.parameters)
    command.upgrade(alembic_config(connection), "head")
    connection.commit()
    if lock is not None:
        connection.execute(text(lock.release), lock.parameters)
