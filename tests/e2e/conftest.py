"""Fixtures shared by the contract tests: cuttable paths to the real database and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.proxy import Proxy
from tests.support import DATABASE_SERVERS, REDIS_HOST, REDIS_PORT, AppClient, MakeApp


async def cuttable(backend: str, host: str, port: int) -> AsyncIterator[Proxy]:
    """A proxy to a real server of a server set-up (database + Redis), cut at the end."""
    if backend == "sqlite":
        pytest.skip("SQLite and the in-process cache live in the process: they cannot go away")
    proxy = Proxy(host, port)
    await proxy.restore()
    yield proxy
    await proxy.cut()


@pytest.fixture
async def database_proxy(backend: str) -> AsyncIterator[Proxy]:
    """A cuttable path to the real database server (MariaDB or PostgreSQL)."""
    host, port = (
        (server.host, server.port) if (server := DATABASE_SERVERS.get(backend)) else ("", 0)
    )
    async for proxy in cuttable(backend, host, port):
        yield proxy


@pytest.fixture
async def proxied_client(
    make_app: MakeApp, database_proxy: Proxy, base_settings: dict[str, Any], backend: str
) -> AppClient:
    """An app on the session's database reached through ``database_proxy`` (2 s timeouts)."""
    database = base_settings["database_url"].rsplit("/", 1)[1]
    return await make_app(
        database_url=DATABASE_SERVERS[backend].url(database, port=database_proxy.port),
        db_timeout_seconds=2,
    )


@pytest.fixture
async def redis_proxy(backend: str) -> AsyncIterator[Proxy]:
    """A cuttable path to the real Redis."""
    async for proxy in cuttable(backend, REDIS_HOST, REDIS_PORT):
        yield proxy
