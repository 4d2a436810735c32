"""The Redis backend (``CACHE_URL=redis://`` or ``rediss://``), shared by workers and hosts.

Each operation is one round trip on the process's one pipelined connection (``resp``). Redis's
error replies (``OOM``, value too large...) become ``CacheRefused``; a connection that fails or
an answer that does not come within the timeout becomes ``CacheUnavailable``.
"""

from __future__ import annotations

from collections.abc import Sequence

from posts_api.core.cache.resp import Command, RespClient


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

    async def count(self, keys: Sequence[str], window: int) -> None:
        """``INCR`` and ``EXPIRE NX`` per key, pipelined: one round trip."""
        commands: list[Command] = []
        for key in keys:
            commands += (("INCR", key), ("EXPIRE", key, window, "NX"))
        if commands:
            await self._client.execute(*commands)

    async def ttl(self, key: str) -> int:
        """``TTL``, with Redis's -1/-2 (no expiry/missing) mapped to 0."""
        (seconds,) = await self._client.execute(("TTL", key))
        return max(0, int(seconds))

    async def delete(self, key: str) -> None:
        """``DEL``."""
        await self._client.execute(("DEL", key))

    async def ping(self) -> None:
        """``PING``."""
        await self._client.execute(("PING",))

    async def close(self) -> None:
        """Close the connection."""
        await self._client.close()
