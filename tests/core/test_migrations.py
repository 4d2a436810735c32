"""The migrations build exactly what the models describe, on every database, and upgrade a
1.0 database in place."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from sqlalchemy import Connection, bindparam, inspect, text

from posts_api.core.config import Settings
from posts_api.core.db import Base, create_engine
from posts_api.main import create_app
from posts_api.migrations import alembic_config, upgrade_to_head
from posts_api.posts.models import PostText
from tests.conftest import make_settings
from tests.support import DATABASE_SERVERS, FAST_HASHING, POSTS_API, SECRET, AppClient, cli_env


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
            session_keys = await connection.run_sync(
                lambda c: inspect(c).get_foreign_keys("sessions")
            )
    finally:
        await engine.dispose()
    assert foreign_keys[0]["options"].get("ondelete") == "CASCADE"
    assert session_keys[0]["options"].get("ondelete") == "CASCADE"
    text_type = {
        "sqlite": "TEXT",
        "mysql": "MEDIUMTEXT",  # 16 MiB, not TEXT's 64 KiB
        "mariadb": "MEDIUMTEXT",
        "postgresql": "BYTEA",  # text cannot hold U+0000
    }
    assert str(columns["text"]["type"]).upper() == text_type[engine.dialect.name]


# A hash made by posts-api 1.0 (Argon2id, t=3, m=64 MiB, p=4) of this password.
PASSWORD_1_0 = "pässwörd 😀"
HASH_1_0 = (
    "$argon2id$v=19$m=65536,t=3,p=4$0JnqtRHdLtTaeus3H93spg$"
    "xsIJYC/TKKLpn/Ag4LyWXhVz1IAw5TbaS9z6sQjb7X0"
)


def _to_1_0_with_data(connection: Connection) -> None:
    """Migrate to 1.0's schema (revision 0001) and fill it as 1.0 would have."""
    from alembic import command

    command.upgrade(alembic_config(connection), "0001")
    now = dt.datetime(2026, 11, 30, 12, 0, 0, 123456)
    connection.execute(
        text(
            "INSERT INTO users (id, email, password_hash, created_at)"
            " VALUES (7, 'old@example.com', :hash, :now)"
        ),
        {"hash": HASH_1_0, "now": now},
    )
    connection.execute(
        text(
            "INSERT INTO posts (id, user_id, text, created_at, updated_at)"
            " VALUES (3, 7, :text, :now, :now)"
        ).bindparams(bindparam("text", type_=PostText())),  # UTF-8 bytes on PostgreSQL
        {"text": "from 1.0 😀", "now": now},
    )
    connection.commit()


@pytest.fixture
def fresh_database(backend: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings for an empty database of ``backend`` (and an in-process cache)."""
    if backend == "sqlite":
        yield {"database_url": f"sqlite:///{tmp_path / 'old.db'}", "cache_url": "mem://"}
        return
    server = DATABASE_SERVERS[backend]
    name = server.create()
    try:
        yield {"database_url": server.url(name), "cache_url": "mem://"}
    finally:
        server.drop(name)


async def test_a_1_0_database_upgrades_in_place(fresh_database: dict[str, Any]) -> None:
    """Users, passwords and posts of a 1.0 database survive ``posts-api migrate``."""
    settings = make_settings(fresh_database | FAST_HASHING)
    engine = create_engine(settings, autocommit=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_to_1_0_with_data)
    finally:
        await engine.dispose()
    await upgrade_to_head(settings)
    app = create_app(settings)
    async with LifespanManager(app), AppClient(app, "127.0.0.9") as client:
        body = {"email": "old@example.com", "password": PASSWORD_1_0}
        resp = await client.post("/auth/login", json=body)
        assert resp.status_code == 200, resp.text
        auth = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        listed = (await client.get("/posts", headers=auth)).json()
        assert [(p["post_id"], p["text"]) for p in listed] == [(3, "from 1.0 😀")]
        me = (await client.get("/auth/me", headers=auth)).json()
        assert me["user_id"] == 7
        assert me["created_at"].startswith("2026-11-30T12:00:00.123456")
        assert (
            await client.post("/auth/refresh", json={"refresh_token": resp.json()["refresh_token"]})
        ).status_code == 200


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
