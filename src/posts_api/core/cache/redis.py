"""The Redis backend (``CACHE_URL=redis://`` or ``rediss://``), shared by workers and hosts.

Each operation is one round trip on the process's one pipelined connection (``resp``). Redis's
error replies (``OOM``, value too large...) become ``CacheRefused``; a connection that fails or
an answer that does not come within the timeout becomes ``CacheUnavailable``.
"""

from __future__ import annotations

from collections.abc import Sequence

from posts_api.core.cache.resp import Command, RespClient

UNCOUNT_SCRIPT = """
local value = tonumber(redis.call('GET', KEYS[1]))
if value and value > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""
"""Take one back from a counter that exists and is above 0 (``DECR`` keeps its expiry)."""


class RedisBackend:
    """Redis through the cache's own small client (``redis://``, ``rediss://``).

    Timeouts are short and there are no retries: when Redis is away the service falls back to
    the database at once instead of stalling every request.
    """

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        """Connect lazily to ``url``; nothing is sent until the first command."""
        self._client = RespClient(url, timeout)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One ``MGET``."""
        if not keys:
            return []
        (values,) = await self._client.execute(("MGET", *keys))
        return values  # type: ignore[no-any-return]

    async def set(self, key: str, value: bytes, ttl: int | None) -> None:
        """One ``SET``, with ``EX`` when ``ttl`` is given."""
        expiry = ("EX", ttl) if ttl is not None else ()
        await self._client.execute(("SET", key, value, *expiry))

    async def count(self, keys: Sequence[str], window: int) -> list[tuple[int, int]]:
        """``SET key 0 EX window NX``, ``INCR``, ``TTL`` per key, pipelined: one round trip.

        The ``SET`` starts a window only for a missing key, and ``INCR`` keeps the expiry
        (Redis 6.2 and later; ``EXPIRE ... NX`` would need 7). A key that expired between the
        two comes back from ``INCR`` at 1 without an expiry (``TTL`` -1): one more round trip
        gives it its window, so no counter outlives it.
        """
        commands: list[Command] = []
        for key in keys:
            commands += (("SET", key, 0, "EX", window, "NX"), ("INCR", key), ("TTL", key))
        replies = await self._client.execute(*commands) if commands else []
        counted = [(int(replies[i + 1]), int(replies[i + 2])) for i in range(0, len(replies), 3)]
        endless = [
            ("EXPIRE", key, window) for key, (_, ttl) in zip(keys, counted, strict=True) if ttl < 0
        ]
        if endless:
            await self._client.execute(*endless)
        return [(value, ttl if ttl > 0 else window) for value, ttl in counted]

    async def uncount(self, keys: Sequence[str], clear: Sequence[str]) -> None:
        """A decrement-if-positive script per key and ``DEL`` of ``clear``: one round trip.

        A script because ``DECR`` of a key that expired meanwhile would make a new one, at -1
        and without an expiry.
        """
        commands: list[Command] = [("EVAL", UNCOUNT_SCRIPT, 1, key) for key in keys]
        if clear:
            commands.append(("DEL", *clear))
        if commands:
            await self._client.execute(*commands)

    async def delete(self, key: str) -> None:
        """``DEL``."""
        await self._client.execute(("DEL", key))

    async def ping(self) -> None:
        """``PING``."""
        await self._client.execute(("PING",))

    async def close(self) -> None:
        """Close the connection."""
        await self._client.close()
