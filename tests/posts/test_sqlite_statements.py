"""On SQLite, the posts routes' statements share one connection: concurrent, and never dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.pool import QueuePool

from posts_api.core.driver import SQLiteDriver
from posts_api.main import create_app
from posts_api.migrations import upgrade_to_head
from posts_api.posts.service import PostService
from tests.conftest import make_settings
from tests.e2e.test_posts import create
from tests.support import FAST_HASHING, sign_up


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app on a fresh SQLite database."""
    values = {"database_url": f"sqlite:///{tmp_path / 'posts.db'}", "cache_url": "mem://"}
    settings = make_settings(values | FAST_HASHING)
    await upgrade_to_head(settings)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def posts_of(client: httpx.AsyncClient) -> PostService:
    """The app's post service."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    service: PostService = transport.app.state.posts  # type: ignore[attr-defined]
    return service


async def test_concurrent_requests_run_on_one_connection(client: httpx.AsyncClient) -> None:
    """Forty requests at once: all answered, every statement on the same driver connection."""
    user = await sign_up(client)
    post_id = await create(client, user)
    used: set[int] = set()
    fetch, execute = SQLiteDriver.fetch, SQLiteDriver.execute

    async def spy_fetch(driver: Any, connection: Any, sql: str, parameters: Any) -> Any:
        used.add(id(connection))
        return await fetch(driver, connection, sql, parameters)

    async def spy_execute(driver: Any, connection: Any, sql: str, parameters: Any) -> Any:
        used.add(id(connection))
        return await execute(driver, connection, sql, parameters)

    reads = (client.get(f"/posts/post/{post_id}", headers=user.auth) for _ in range(20))
    writes = (client.post("/posts/post", json={"text": "x"}, headers=user.auth) for _ in range(20))
    with (
        patch.object(SQLiteDriver, "fetch", spy_fetch),
        patch.object(SQLiteDriver, "execute", spy_execute),
    ):
        answers = await asyncio.gather(*reads, *writes)
    assert [a.status_code for a in answers] == [200] * 20 + [201] * 20
    assert len(used) == 1
    pool = posts_of(client).database.engine.pool
    assert isinstance(pool, QueuePool)
    assert pool.checkedout() == 1  # kept, not given back


async def test_a_cancelled_request_leaves_the_connection_to_the_others(
    client: httpx.AsyncClient,
) -> None:
    """A client gone mid-statement: the shared connection is kept, and the next request works."""
    user = await sign_up(client)
    post_id = await create(client, user)
    database = posts_of(client).database
    async with database.connect() as connection:
        before = connection.driver_connection
    started = asyncio.Event()
    fetch = SQLiteDriver.fetch

    async def slow_fetch(driver: Any, connection: Any, sql: str, parameters: Any) -> Any:
        started.set()
        await asyncio.sleep(1)
        return await fetch(driver, connection, sql, parameters)

    with patch.object(SQLiteDriver, "fetch", slow_fetch):
        request = asyncio.create_task(client.get(f"/posts/post/{post_id}", headers=user.auth))
        await started.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    resp = await client.get(f"/posts/post/{post_id}", headers=user.auth)
    assert resp.status_code == 200
    async with database.connect() as connection:
        assert connection.driver_connection is before
