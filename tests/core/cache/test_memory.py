"""The in-process backend: bounded in bytes, counters in a store of their own."""

from __future__ import annotations

from posts_api.core.cache import Cache, MemoryBackend


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
    tally = await cache.count(["login-fail:email:x"], window=60)
    assert tally.values == [4]
    assert 0 < tally.seconds_left[0] <= 60
