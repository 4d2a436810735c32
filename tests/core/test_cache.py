"""The cache on both backends (in-process and a real Redis): versioned entries, races,
counters, bounds, and the new generation after an outage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posts_api.core.cache import Cache, MemoryBackend, RedisBackend
from tests.proxy import Proxy
from tests.reliability.helpers import private_redis
from tests.support import REDIS_DB_APP, REDIS_HOST, REDIS_PORT, flush_redis, redis_url


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


async def test_miss_then_hit(cache: Cache) -> None:
    value, tag = await cache.get_fresh("x")
    assert value is None
    assert tag is not None
    await cache.put_fresh("x", tag, b"[1]", ttl=60)
    assert (await cache.get_fresh("x"))[0] == b"[1]"


async def test_invalidate_makes_entries_stale(cache: Cache) -> None:
    _, tag = await cache.get_fresh("x")
    await cache.put_fresh("x", tag, b"old", ttl=60)
    await cache.invalidate("x", ttl=60)
    assert (await cache.get_fresh("x"))[0] is None


async def test_a_read_that_started_before_a_write_cannot_store_stale_data(cache: Cache) -> None:
    """Reader gets its tag, a writer invalidates, the reader stores what it read: stale, so
    nobody may ever see it."""
    _, reader_tag = await cache.get_fresh("x")
    await cache.invalidate("x", ttl=60)  # the write lands while the reader queries
    await cache.put_fresh("x", reader_tag, b"stale", ttl=60)
    value, fresh_tag = await cache.get_fresh("x")
    assert value is None
    await cache.put_fresh("x", fresh_tag, b"fresh", ttl=60)
    assert (await cache.get_fresh("x"))[0] == b"fresh"


async def test_names_are_independent(cache: Cache) -> None:
    for name in ("a", "b"):
        _, tag = await cache.get_fresh(name)
        await cache.put_fresh(name, tag, name.encode(), ttl=60)
    await cache.invalidate("a", ttl=60)
    assert (await cache.get_fresh("a"))[0] is None
    assert (await cache.get_fresh("b"))[0] == b"b"


async def test_values_may_contain_the_separator(cache: Cache) -> None:
    _, tag = await cache.get_fresh("x")
    await cache.put_fresh("x", tag, b"line1\nline2\n", ttl=60)
    assert (await cache.get_fresh("x"))[0] == b"line1\nline2\n"


async def test_entries_expire(cache: Cache) -> None:
    _, tag = await cache.get_fresh("x")
    await cache.put_fresh("x", tag, b"v", ttl=1)
    await asyncio.sleep(1.1)
    assert (await cache.get_fresh("x"))[0] is None


async def test_counters(cache: Cache) -> None:
    assert await cache.counts(["a", "b"]) == [0, 0]
    await cache.count(["a", "b"], window=60)
    await cache.count(["a"], window=60)
    assert await cache.counts(["a", "b"]) == [2, 1]
    assert 55 <= await cache.seconds_left("a") <= 60
    await cache.reset("a")
    assert await cache.counts(["a", "b"]) == [0, 1]
    assert await cache.seconds_left("a") == 0


async def test_counter_window_starts_at_the_first_count(cache: Cache) -> None:
    await cache.count(["a"], window=1)
    await asyncio.sleep(0.6)
    await cache.count(["a"], window=1)  # does not extend the window
    await asyncio.sleep(0.6)
    assert await cache.counts(["a"]) == [0]


async def test_memory_backend_is_bounded() -> None:
    backend = MemoryBackend(max_bytes=1_048_576)
    cache = Cache(backend)
    for user in range(5_000):
        _, tag = await cache.get_fresh(f"posts:{user}")
        await cache.put_fresh(f"posts:{user}", tag, b"x" * 1000, ttl=60)
    assert backend._entries.currsize <= 1_048_576
    _, tag = await cache.get_fresh("huge")
    await cache.put_fresh("huge", tag, b"x" * 2_000_000, ttl=60)  # larger than the cache: dropped
    assert (await cache.get_fresh("huge"))[0] is None
    assert cache.available  # refused, not unreachable: no outage, no new generation
    assert (await cache.get_fresh("posts:4999"))[0] == b"x" * 1000


async def test_cached_lists_never_evict_login_counters() -> None:
    """On ``mem://`` a flood of large lists must not lift the login throttle."""
    cache = Cache(MemoryBackend(max_bytes=1_048_576))
    for _ in range(3):
        await cache.count(["login-fail:email:x"], window=60)
    for user in range(50):  # 50 x 100 KB: five times the budget
        _, tag = await cache.get_fresh(f"posts:{user}")
        await cache.put_fresh(f"posts:{user}", tag, b"x" * 100_000, ttl=60)
    assert await cache.counts(["login-fail:email:x"]) == [3]
    assert 0 < await cache.seconds_left("login-fail:email:x") <= 60
    await cache.reset("login-fail:email:x")
    assert await cache.counts(["login-fail:email:x"]) == [0]


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
            await cache.invalidate("small", ttl=60)
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
        await cache.invalidate("x", ttl=60)  # lost: Redis is away
        assert await cache.counts(["n"]) == [0]
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


async def test_several_entries_in_one_read(cache: Cache) -> None:
    """``get_fresh_many`` reads several entries in one backend call, each with its own tag."""
    for name, value in (("a", b"A"), ("b", b"B")):
        _, tag = await cache.get_fresh(name)
        await cache.put_fresh(name, tag, value, ttl=60)
    await cache.invalidate("b", ttl=60)
    calls: list[object] = []
    real = cache.backend.get_many

    async def counted(keys: object) -> list[bytes | None]:
        calls.append(keys)
        return await real(keys)  # type: ignore[arg-type]

    cache.backend.get_many = counted  # type: ignore[method-assign]
    (a, a_tag), (b, b_tag), (c, c_tag) = await cache.get_fresh_many(("a", "b", "c"))
    assert len(calls) == 1
    assert (a, b, c) == (b"A", None, None)
    assert a_tag is not None
    assert b_tag is not None
    assert c_tag is not None
    await cache.put_fresh("b", b_tag, b"B2", ttl=60)
    assert (await cache.get_fresh_many(("b", "a")))[0][0] == b"B2"


async def test_several_entries_while_the_cache_is_away() -> None:
    cache = Cache(RedisBackend("redis://127.0.0.1:1/0", timeout=0.2))
    try:
        assert await cache.get_fresh_many(("a", "b")) == [(None, None), (None, None)]
    finally:
        await cache.close()
