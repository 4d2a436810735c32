"""Fixtures: the app built by ``create_app`` on each database set-up, migrated as in production.

``backend`` is ``sqlite`` (a file + the in-process cache), ``mysql`` (MariaDB/MySQL + Redis) or
``postgres`` (PostgreSQL + Redis), real connections each. Tests that take ``client`` run on all
three; a server set-up skips with a reason when its servers are absent, and fails under
``CI=true``.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from posts_api.core.config import Settings
from posts_api.main import create_app
from posts_api.migrations import upgrade_to_head
from tests.support import (
    DATABASE_SERVERS,
    FAST_HASHING,
    REDIS_DB_APP,
    AppClient,
    MakeApp,
    StatementLog,
    User,
    flush_redis,
    redis_url,
    sign_up,
)

# The suite sets everything it needs; a developer's own environment must not leak in.
for _name in Settings.model_fields:
    os.environ.pop(_name.upper(), None)

# The files that take longest (each starts real servers), longest first. ``make test`` runs the
# suite on two pytest-xdist workers, a file at a time each: started first, these leave the many
# short files to even out the end, instead of one worker finishing alone on a long one.
LONGEST_FIRST = (
    "tests/reliability/test_faults.py",
    "tests/reliability/test_concurrency.py",
    "tests/e2e/test_cli.py",
    "tests/reliability/test_fuzz.py",
    "tests/reliability/test_big_lists.py",
    "tests/e2e/test_serve_ops.py",
    "tests/e2e/test_nginx.py",
    "tests/reliability/test_attacks.py",
    "tests/core/test_migrations.py",
)


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by fixture, which the sort keeps
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the ``LONGEST_FIRST`` files first, in that order; the rest keep their order."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session", params=["sqlite", "mysql", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database set-up the test runs on."""
    return str(request.param)


@pytest.fixture(scope="session")
def base_settings(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Settings values for a fresh database of ``backend`` (made for the session, then dropped)."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "posts.db"
        yield {"database_url": f"sqlite:///{path}", "cache_url": "mem://"} | FAST_HASHING
        return
    server = DATABASE_SERVERS[backend]
    flush_redis(REDIS_DB_APP)
    name = server.create()
    yield {
        "database_url": server.url(name),
        "cache_url": redis_url(REDIS_DB_APP),
        # The suite shares its machine: a reply that a loaded loop reads late is not an outage
        # (tests of the timeout itself set their own).
        "cache_timeout_seconds": 5.0,
    } | FAST_HASHING
    server.drop(name)


def make_settings(values: dict[str, Any], **overrides: Any) -> Settings:
    """Settings from explicit values only (no ``.env``)."""
    return Settings(_env_file=None, **(values | overrides))


@pytest.fixture(scope="session")
async def migrated(base_settings: dict[str, Any]) -> dict[str, Any]:
    """The session's database, migrated to head once, as ``posts-api migrate`` does."""
    await upgrade_to_head(make_settings(base_settings))
    return base_settings


@pytest.fixture(scope="session")
async def app(migrated: dict[str, Any]) -> AsyncIterator[FastAPI]:
    """The app with default settings on the session's database, lifespan running."""
    application = create_app(make_settings(migrated))
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in-process."""
    async with _client(app) as http:
        yield http


def _client(app: FastAPI) -> AppClient:
    # Each client has an address of its own, so per-address login counters do not leak
    # between tests sharing one Redis.
    address = f"127.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    return AppClient(app, address)


@pytest.fixture
async def make_app(migrated: dict[str, Any]) -> AsyncIterator[MakeApp]:
    """Build a client for an app with some settings overridden (same database)."""
    managers: list[LifespanManager] = []
    clients: list[AppClient] = []

    async def build(**overrides: Any) -> AppClient:
        application = create_app(make_settings(migrated, **overrides))
        manager = LifespanManager(application)
        await manager.__aenter__()
        managers.append(manager)
        http = _client(application)
        clients.append(http)
        return http

    yield build
    for http in clients:
        await http.aclose()
    for manager in reversed(managers):
        await manager.__aexit__(None, None, None)


@pytest.fixture
async def user(client: httpx.AsyncClient) -> User:
    """A fresh user."""
    return await sign_up(client)


@pytest.fixture
async def other_user(client: httpx.AsyncClient) -> User:
    """A second fresh user."""
    return await sign_up(client)


@pytest.fixture
def statements() -> StatementLog:
    """Records the SQL an engine sends (see ``StatementLog.watching``)."""
    return StatementLog()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from an empty working directory (``./data`` lives there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"
