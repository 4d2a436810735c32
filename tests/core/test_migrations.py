"""The migrations build exactly what the models describe, on every database."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from posts_api.core.config import Settings
from posts_api.core.db import Base, create_engine
from posts_api.migrations import alembic_config
from tests.conftest import make_settings
from tests.support import DATABASE_SERVERS, POSTS_API, SECRET, cli_env


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_match_the_migrated_schema(migrated: dict[str, Any]) -> None:
    engine = create_engine(make_settings(migrated), autocommit=False)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            columns = await connection.run_sync(
                lambda c: {col["name"]: col for col in inspect(c).get_columns("posts")}
            )
            foreign_keys = await connection.run_sync(lambda c: inspect(c).get_foreign_keys("posts"))
    finally:
        await engine.dispose()
    assert foreign_keys[0]["options"].get("ondelete") == "CASCADE"
    text_type = {
        "sqlite": "TEXT",
        "mysql": "MEDIUMTEXT",  # 16 MiB, not TEXT's 64 KiB
        "mariadb": "MEDIUMTEXT",
        "postgresql": "BYTEA",  # text cannot hold U+0000
    }
    assert str(columns["text"]["type"]).upper() == text_type[engine.dialect.name]


@pytest.mark.parametrize("kind", ["mysql", "postgres"])
def test_hosts_migrating_together_take_turns(kind: str, tmp_path: Path) -> None:
    """Three ``posts-api migrate`` processes at once on one empty database, as hosts starting
    together: the lock makes them take turns, so one creates the schema and the others find it
    done (without the lock, they all try to create the tables)."""
    server = DATABASE_SERVERS[kind]
    name = server.create()
    try:
        env = cli_env(DATABASE_URL=server.url(name), SECRET_KEY=SECRET)
        processes = [
            subprocess.Popen(
                [POSTS_API, "migrate"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        outcomes = [
            (proc.wait(60), proc.stderr.read() if proc.stderr else "") for proc in processes
        ]
        assert [status for status, _ in outcomes] == [0] * 3, outcomes
        settings = make_settings({"database_url": server.url(name), "secret_key": SECRET})
        version = asyncio.run(_version(settings))
        assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    finally:
        server.drop(name)


async def _version(settings: Settings) -> str | None:
    """The revision the database of ``settings`` is at."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    return None if version is None else str(version)
