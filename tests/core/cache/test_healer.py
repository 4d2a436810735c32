"""Fail-soft on Redis: refused is not unreachable, an outage, the new generation after it, a
change refused while Redis is away, and a new generation when Redis restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posts_api.core.cache import Cache, CacheUnavailable, RedisBackend
from tests.proxy import Proxy
from tests.reliability.helpers import private_redis
from tests.support import REDIS_DB_APP, REDIS_HOST, REDIS_PORT, flush_redis


async def test_a_value_redis_refuses_is_skipped_not_an_outage(tmp_path: Path) -> None:
    """A private Redis short of memory (noeviction) answers OOM to a large SET: the value is
    not cached, the cache stays in use and keeps every other entry. A refused invalidation,
    though, is an outage: the stale entry it should retire must not be served."""
    with private_redis(tmp_path) as server:
        admin = server.client()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) + 1_048_576))
        admin.close()
        cache = Cache(RedisBackend(server.url))
        try:
            _, tag = await cache.get_fresh("small")
            await cache.put_fresh("small", tag, b"kept", ttl=60)
            _, tag = await cache.get_fresh("big")
            await cache.put_fresh("big", tag, b"x" * 4_000_000, ttl=60)
            assert cache.available
            assert (await cache.get_fresh("big"))[0] is None
            assert (await cache.get_fresh("small"))[0] == b"kept"
            _, tag = await cache.get_fresh("filler")
            for i in range(64):  # fill memory with small values until Redis refuses writes
                await cache.put_fresh(f"filler{i}", tag, b"y" * 65_536, ttl=60)
            await cache.invalidate("small")
            assert not cache.available
        finally:
            await cache.close()


async def test_outage_then_new_generation() -> None:
    """Redis away: everything misses quietly and writes cannot invalidate. Redis back: the
    whole cache starts a new generation, so nothing cached before the outage is served."""
    flush_redis(REDIS_DB_APP)
    proxy = Proxy(REDIS_HOST, REDIS_PORT)
    await proxy.restore()
    cache = Cache(RedisBackend(f"redis://127.0.0.1:{proxy.port}/{REDIS_DB_APP}", timeout=0.5))
    try:
        _, tag = await cache.get_fresh("x")
        await cache.put_fresh("x", tag, b"before the outage", ttl=60)
        await proxy.cut()
        assert await cache.get_fresh("x") == (None, None)
        assert not cache.available
        await cache.invalidate("x")  # lost: Redis is away
        assert (await cache.count(["n"], window=60)).local  # counted in the process meanwhile
        assert not await cache.check()
        await proxy.restore()
        for _ in range(50):
            if cache.available:
                break
            await asyncio.sleep(0.1)
        assert cache.available
        assert (await cache.get_fresh("x"))[0] is None
    finally:
        await cache.close()
        await proxy.cut()


async def test_several_entries_while_the_cache_is_away() -> None:
    cache = Cache(RedisBackend("redis://127.0.0.1:1/0", timeout=0.2))
    try:
        assert await cache.get_fresh_many(("a", "b")) == [(None, None), (None, None)]
    finally:
        await cache.close()


async def test_a_change_is_refused_while_the_cache_is_away() -> None:
    cache = Cache(RedisBackend("redis://127.0.0.1:1/0", timeout=0.2))
    try:
        with pytest.raises(CacheUnavailable):
            async with cache.changing("x"):
                raise AssertionError("the block must not run")
        assert not cache.available
        with pytest.raises(CacheUnavailable):  # still away: refused again
            async with cache.changing("x"):
                raise AssertionError("the block must not run")
    finally:
        await cache.close()


async def test_a_restarted_redis_starts_a_new_generation(tmp_path: Path) -> None:
    """Back from a snapshot taken while an entry was current, with no call in flight when it
    went: the first connection to the new process sees another run id, and starts a new
    generation before anything is read."""
    with private_redis(tmp_path) as server:
        cache = Cache(RedisBackend(server.url))
        try:
            _, tag = await cache.get_fresh("x")
            await cache.put_fresh("x", tag, b"old", ttl=60)
            admin = server.client()
            admin.save()
            admin.close()
            async with cache.changing("x"):
                pass
            server.kill()
            server.start()
            assert (await cache.get_fresh("x"))[0] is None
            for _ in range(100):  # the first call may have found the old connection dead
                value, tag = await cache.get_fresh("x")
                if tag is not None:
                    break
                await asyncio.sleep(0.05)
            assert value is None
            await cache.put_fresh("x", tag, b"new", ttl=60)
            await cache.backend.close()  # a new connection to the same process: no new generation
            assert (await cache.get_fresh("x"))[0] == b"new"
        finally:
            await cache.close()


async def test_a_change_made_while_reads_bypass_the_cache_ends_its_mark() -> None:
    """Redis answers again before the healer's next poll: a change is taken at once (the mark
    is tried even while reads bypass the cache), and its mark is ended on the way out, not left
    to expire (which would keep the group uncached for minutes)."""
    flush_redis(REDIS_DB_APP)
    proxy = Proxy(REDIS_HOST, REDIS_PORT)
    await proxy.restore()
    cache = Cache(RedisBackend(f"redis://127.0.0.1:{proxy.port}/{REDIS_DB_APP}", timeout=0.5))
    try:
        await cache.get_fresh("x")
        await proxy.cut()
        assert await cache.get_fresh("x") == (None, None)
        assert not cache.available
        await proxy.restore()
        async with cache.changing("x"):
            pass
        for _ in range(50):
            if cache.available:
                break
            await asyncio.sleep(0.1)
        value, tag = await cache.get_fresh("x")
        assert value is None
        assert tag is not None  # not marked any more: a value read now can be cached
    finally:
        await cache.close()
        await proxy.cut()
