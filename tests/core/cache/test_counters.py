"""Window counters on both backends."""

from __future__ import annotations

import asyncio

from posts_api.core.cache import Cache


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
