"""Alembic's entry point.

It runs the migrations on the connection ``upgrade_to_head`` passes in or, from the ``alembic``
command line, on the database the settings name.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from posts_api.auth import models as _auth_models  # noqa: F401 - registers the tables
from posts_api.core.config import Settings
from posts_api.core.db import Base, create_engine
from posts_api.posts import models as _posts_models  # noqa: F401

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    """Run the pending migrations in one transaction on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER is limited
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_settings() -> None:
    """Connect with the application's settings (the ``alembic`` command line path)."""
    engine = create_engine(Settings(), autocommit=False)
    async with engine.connect() as connection:
        await connection.run_sync(run_on)
        await connection.commit()
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is None:
    asyncio.run(run_from_settings())
else:
    run_on(connection)
