"""Fixtures of the cache tests: a cache on each backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from posts_api.core.cache import Cache, MemoryBackend, RedisBackend
from tests.support import REDIS_DB_APP, flush_redis, redis_url


@pytest.fixture(params=["mem", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    """A cache on each backend, under a namespace of its own."""
    if request.param == "mem":
        backend: MemoryBackend | RedisBackend = MemoryBackend(16 * 1_048_576)
    else:
        flush_redis(REDIS_DB_APP)
        backend = RedisBackend(redis_url(REDIS_DB_APP))
    cache = Cache(backend, namespace=f"test-{uuid.uuid4().hex[:8]}")
    yield cache
    await cache.close()
