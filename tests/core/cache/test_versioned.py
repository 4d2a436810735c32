"""Versioned entries on both backends: hits, invalidation, the read/write race, expiry,
several entries in one read."""

from __future__ import annotations

import asyncio

from posts_api.core.cache import Cache


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
