"""Revocation that holds: an ended session is a 401 on every instance, after a restart of the
service, after Redis loses its data or restarts, and while Redis is unreachable.

Two ``create_app`` instances on one database and one Redis are two hosts. Redis faults use a
``redis-server`` of the test's own (FLUSHALL and restarts never touch the shared server) or a
cuttable proxy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.proxy import Proxy
from tests.reliability.helpers import private_redis
from tests.support import REDIS_DB_APP, REDIS_HOST, REDIS_PORT, AppClient, MakeApp, User, sign_up


async def me(client: httpx.AsyncClient, user: User) -> int:
    """The status of GET /auth/me with the user's token."""
    return (await client.get("/auth/me", headers=user.auth)).status_code


async def posts(client: httpx.AsyncClient, user: User) -> int:
    """The status of GET /posts with the user's token (the hot path's session check)."""
    return (await client.get("/posts", headers=user.auth)).status_code


async def wait_available(client: AppClient) -> None:
    """Wait until the app uses its cache again after an outage."""
    for _ in range(100):
        if client.app.state.cache.available:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the cache did not come back")


def shared_only(backend: str) -> None:
    """Several instances share state only with MariaDB + Redis."""
    if backend != "mysql":
        pytest.skip("the in-process cache is one process's: several instances need Redis")


async def test_logout_is_seen_by_another_instance(make_app: MakeApp, backend: str) -> None:
    shared_only(backend)
    first, second = await make_app(), await make_app()
    user = await sign_up(first)
    assert await posts(first, user) == 200
    assert await posts(second, user) == 200  # both have seen the session live
    assert (await second.post("/auth/logout", headers=user.auth)).status_code == 204
    assert await posts(first, user) == 401
    assert await me(first, user) == 401


async def test_revocation_survives_a_restart(make_app: MakeApp) -> None:
    before = await make_app()
    user = await sign_up(before)
    assert await posts(before, user) == 200
    assert (await before.post("/auth/logout-all", headers=user.auth)).status_code == 204
    after = await make_app()  # a new process: empty memo, empty in-process cache
    assert await posts(after, user) == 401
    assert await me(after, user) == 401


@pytest.fixture
def own_redis(backend: str, tmp_path: Path) -> Any:
    """A redis-server of the test's own (MariaDB set-up only)."""
    shared_only(backend)
    with private_redis(tmp_path) as server:
        yield server


async def test_revocation_survives_redis_losing_its_data(make_app: MakeApp, own_redis: Any) -> None:
    first, second = await make_app(cache_url=own_redis.url), await make_app(cache_url=own_redis.url)
    user = await sign_up(first)
    assert await posts(second, user) == 200
    assert (await first.post("/auth/logout", headers=user.auth)).status_code == 204
    own_redis.client().flushall()
    assert await posts(second, user) == 401  # a miss goes to the database
    own_redis.stop()
    own_redis.start()  # comes back empty
    for client in (first, second):
        for _ in range(3):  # through the outage, its detection and the new generation
            assert await posts(client, user) == 401
            await asyncio.sleep(0.05)
        await wait_available(client)
        assert await posts(client, user) == 401
        assert await me(client, user) == 401


async def test_revocation_while_redis_is_unreachable_holds(make_app: MakeApp, backend: str) -> None:
    """Cut the cache: the check goes to the database (fail closed), and a session cached as
    live before the outage and ended during it stays ended once the cache is back."""
    shared_only(backend)
    proxy = Proxy(REDIS_HOST, REDIS_PORT)
    await proxy.restore()
    try:
        url = f"redis://127.0.0.1:{proxy.port}/{REDIS_DB_APP}"
        first, second = await make_app(cache_url=url), await make_app(cache_url=url)
        user = await sign_up(first)
        other = await sign_up(first)
        for client in (first, second):
            assert await posts(client, user) == 200  # cached as live everywhere
        await proxy.cut()
        assert await posts(first, user) == 200  # served from the database
        assert (await first.post("/auth/logout", headers=user.auth)).status_code == 204
        for client in (first, second):
            assert await posts(client, user) == 401
            assert await posts(client, other) == 200
        await proxy.restore()
        for client in (first, second):
            await wait_available(client)
            assert await posts(client, user) == 401
            assert await me(client, user) == 401
            assert await posts(client, other) == 200
    finally:
        await proxy.cut()
