"""Versioned entries on both backends: hits, invalidation, the read/write race, expiry,
several entries in one read."""

from __future__ import annotations

import asyncio
import contextlib

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
    await cache.invalidate("x")
    assert (await cache.get_fresh("x"))[0] is None


async def test_a_read_that_started_before_a_write_cannot_store_stale_data(cache: Cache) -> None:
    """Reader gets its tag, a writer invalidates, the reader stores what it read: stale, so
    nobody may ever see it."""
    _, reader_tag = await cache.get_fresh("x")
    await cache.invalidate("x")  # the write lands while the reader queries
    await cache.put_fresh("x", reader_tag, b"stale", ttl=60)
    value, fresh_tag = await cache.get_fresh("x")
    assert value is None
    await cache.put_fresh("x", fresh_tag, b"fresh", ttl=60)
    assert (await cache.get_fresh("x"))[0] == b"fresh"


async def test_names_are_independent(cache: Cache) -> None:
    for name in ("a", "b"):
        _, tag = await cache.get_fresh(name)
        await cache.put_fresh(name, tag, name.encode(), ttl=60)
    await cache.invalidate("a")
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
    await cache.invalidate("b")
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


async def test_a_lost_version_or_generation_never_matches(cache: Cache) -> None:
    """Evicted, expired or lost in a restart: a missing version or generation is created anew
    before the read answers, so an entry stored under the old one is stale for good."""
    for lost in ("ver:x", "gen"):
        _, tag = await cache.get_fresh("x")
        await cache.put_fresh("x", tag, b"old", ttl=60)
        await cache.backend.delete(f"{cache._ns}:{lost}")
        value, tag = await cache.get_fresh("x")
        assert value is None
        assert tag is not None
        await cache.put_fresh("x", tag, b"new", ttl=60)
        assert (await cache.get_fresh("x"))[0] == b"new"


async def test_nothing_is_stored_while_a_change_is_in_progress(cache: Cache) -> None:
    _, tag = await cache.get_fresh("x")
    await cache.put_fresh("x", tag, b"old", ttl=60)
    async with cache.changing("x"):
        assert await cache.get_fresh("x") == (None, None)  # read the database, store nothing
    value, tag = await cache.get_fresh("x")
    assert value is None
    await cache.put_fresh("x", tag, b"new", ttl=60)
    assert (await cache.get_fresh("x"))[0] == b"new"


async def test_overlapping_changes_keep_the_mark_until_the_last_ends(cache: Cache) -> None:
    """Writer B ends while writer A is still writing: readers must still store nothing."""
    first = cache.changing("x")
    await first.__aenter__()
    async with cache.changing("x"):
        pass
    assert await cache.get_fresh("x") == (None, None)
    await first.__aexit__(None, None, None)
    assert (await cache.get_fresh("x"))[1] is not None


async def test_a_change_ends_its_mark_however_its_block_ends(cache: Cache) -> None:
    for error in (RuntimeError, asyncio.CancelledError):
        try:
            async with cache.changing("x"):
                raise error()
        except error:
            pass
        assert (await cache.get_fresh("x"))[1] is not None


async def test_a_seed_is_stored_only_when_no_other_change_overlapped(cache: Cache) -> None:
    await cache.get_fresh(("g", "a"))  # the first read starts the generation
    async with cache.changing("g") as change:
        change.seed(("g", "a"), b"live", ttl=60)
    assert (await cache.get_fresh(("g", "a")))[0] == b"live"
    async with cache.changing("g") as change:
        async with cache.changing("g"):  # another change of the group, inside this one
            pass
        change.seed(("g", "b"), b"live", ttl=60)
    assert (await cache.get_fresh(("g", "b")))[0] is None
    outer = cache.changing("g")
    await outer.__aenter__()
    async with cache.changing("g") as change:  # started while another was in progress
        change.seed(("g", "c"), b"live", ttl=60)
    await outer.__aexit__(None, None, None)
    assert (await cache.get_fresh(("g", "c")))[0] is None


async def test_entries_of_a_group_share_its_version(cache: Cache) -> None:
    for item in ("a", "b"):
        _, tag = await cache.get_fresh(("g", item))
        await cache.put_fresh(("g", item), tag, item.encode(), ttl=60)
    _, tag = await cache.get_fresh("h")
    await cache.put_fresh("h", tag, b"h", ttl=60)
    assert [v for v, _ in await cache.get_fresh_many([("g", "a"), ("g", "b"), "h"])] == [
        b"a",
        b"b",
        b"h",
    ]
    async with cache.changing("g"):
        pass
    assert [v for v, _ in await cache.get_fresh_many([("g", "a"), ("g", "b"), "h"])] == [
        None,
        None,
        b"h",
    ]


async def test_a_change_that_changed_nothing_keeps_the_entries(cache: Cache) -> None:
    _, tag = await cache.get_fresh("x")
    await cache.put_fresh("x", tag, b"kept", ttl=60)
    with contextlib.suppress(LookupError):
        async with cache.changing("x", unchanged_by=(LookupError,)):
            raise LookupError  # a 404: nothing written
    assert (await cache.get_fresh("x"))[0] == b"kept"
    with contextlib.suppress(LookupError):
        async with cache.changing("x", unchanged_by=(LookupError,)):
            async with cache.changing("x"):  # another change overlapped: its write may count
                pass
            raise LookupError
    assert (await cache.get_fresh("x"))[0] is None
