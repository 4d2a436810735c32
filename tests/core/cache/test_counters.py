"""Window counters on both backends: counted first and atomically, taken back, cleared, and
counted in the process while the shared backend is unreachable."""

from __future__ import annotations

import asyncio

import redis as redis_py

from posts_api.core.cache import Cache, RedisBackend
from tests.support import REDIS_DB_APP, REDIS_HOST, REDIS_PORT


async def test_count_returns_the_new_values(cache: Cache) -> None:
    first = await cache.count(["a", "b"], window=60)
    assert first.values == [1, 1]
    assert not first.local
    second = await cache.count(["a"], window=60)
    assert second.values == [2]
    assert 55 <= second.seconds_left[0] <= 60


async def test_concurrent_counts_each_get_a_value_of_their_own(cache: Cache) -> None:
    """The value compared is the one counted: no two concurrent counts see the same."""
    tallies = await asyncio.gather(*(cache.count(["a", "b"], window=60) for _ in range(50)))
    assert sorted(t.values[0] for t in tallies) == list(range(1, 51))
    assert sorted(t.values[1] for t in tallies) == list(range(1, 51))


async def test_uncount_takes_one_back_and_clears(cache: Cache) -> None:
    for _ in range(3):
        await cache.count(["a", "b"], window=60)
    await cache.uncount(["a"], local=False, clear=["b"])
    after = await cache.count(["a", "b"], window=60)
    assert after.values == [3, 1]  # a: 3 - 1 + 1; b cleared, then counted afresh
    assert 55 <= after.seconds_left[0] <= 60  # a keeps its window


async def test_uncount_never_goes_below_zero(cache: Cache) -> None:
    await cache.uncount(["missing"], local=False)
    await cache.count(["a"], window=60)
    await cache.uncount(["a"], local=False)
    await cache.uncount(["a"], local=False)
    assert (await cache.count(["missing", "a"], window=60)).values == [1, 1]


async def test_counter_window_starts_at_the_first_count(cache: Cache) -> None:
    await cache.count(["a"], window=1)
    await asyncio.sleep(0.6)
    await cache.count(["a"], window=1)  # does not extend the window
    await asyncio.sleep(0.6)
    assert (await cache.count(["a"], window=1)).values == [1]


async def test_a_counter_without_expiry_gets_one() -> None:
    """A key that expired between ``SET ... NX`` and ``INCR`` is made again without an expiry:
    it gets its window, or one limit reached would last for ever."""
    cache = Cache(RedisBackend(f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB_APP}"))
    admin = redis_py.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB_APP)
    try:
        admin.set(cache._counter("endless"), 4)  # as INCR leaves it: no expiry
        tally = await cache.count(["endless"], window=60)
        assert tally.values == [5]
        assert tally.seconds_left == [60]
        assert 0 < admin.ttl(cache._counter("endless")) <= 60
    finally:
        admin.close()
        await cache.close()


async def test_a_window_about_to_end_says_one_second_not_the_whole_window() -> None:
    """Redis rounds TTL: with under half a second left it reads 0. The seconds left (the
    429's Retry-After) must then be 1, not a fresh window's 900."""
    cache = Cache(RedisBackend(f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB_APP}"))
    admin = redis_py.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB_APP)
    try:
        for _ in range(5):  # a stall past the key's end makes a new window: try again
            admin.set(cache._counter("ending"), 4, px=490)
            tally = await cache.count(["ending"], window=900)
            if tally.values == [5]:
                break
            admin.delete(cache._counter("ending"))
        assert tally.values == [5]
        assert tally.seconds_left == [1]
    finally:
        admin.close()
        await cache.close()


async def test_counted_in_the_process_while_redis_is_unreachable() -> None:
    """Unreachable: counting goes on in the process (degraded, never open), and what is taken
    back is taken from there."""
    cache = Cache(RedisBackend("redis://127.0.0.1:1/0", timeout=0.2))
    try:
        tallies = [await cache.count(["a", "b"], window=60) for _ in range(3)]
        assert [t.values for t in tallies] == [[1, 1], [2, 2], [3, 3]]
        assert all(t.local for t in tallies)
        assert 55 <= tallies[-1].seconds_left[0] <= 60
        await cache.uncount(["a"], local=True, clear=["b"])
        assert (await cache.count(["a", "b"], window=60)).values == [3, 1]
    finally:
        await cache.close()
