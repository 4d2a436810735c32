"""The Redis backend (``CACHE_URL=redis://`` or ``rediss://``), shared by workers and hosts.

Redis's error replies (``OOM``, value too large...) become ``CacheRefused``; a connection that
fails or times out becomes ``CacheUnavailable``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from posts_api.core.cache.errors import CacheRefused, CacheUnavailable


@contextlib.contextmanager
def _unavailable_on_error() -> Iterator[None]:
    """Map Redis's error replies to ``CacheRefused``, its other errors to ``CacheUnavailable``."""
    try:
        yield
    except ResponseError as exc:  # Redis answered: it is there, it said no (OOM, too large)
        raise CacheRefused(str(exc)) from exc
    except (RedisError, OSError) as exc:
        raise CacheUnavailable(str(exc)) from exc


class RedisBackend:
    """Redis through redis-py's asyncio client (``redis://``, ``rediss://``).

    Timeouts are short and there are no retries: when Redis is away the service falls back to
    the database at once instead of stalling every request.
    """

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        """Connect lazily to ``url``; nothing is sent until the first command."""
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=64,
        )

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One ``MGET``."""
        with _unavailable_on_error():
            values: list[bytes | None] = await self._redis.mget(keys)  # type: ignore[assignment]
        return values

    async def set(self, key: str, value: bytes, ttl: int | None) -> None:
        """One ``SET ... EX``."""
        with _unavailable_on_error():
            await self._redis.set(key, value, ex=ttl)

    async def count(self, keys: Sequence[str], window: int) -> None:
        """``INCR`` and ``EXPIRE NX`` per key, pipelined: one round trip."""
        with _unavailable_on_error():
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.incr(key)
                    pipe.expire(key, window, nx=True)
                await pipe.execute()

    async def ttl(self, key: str) -> int:
        """``TTL``, with Redis's -1/-2 (no expiry/missing) mapped to 0."""
        with _unavailable_on_error():
            seconds: int = await self._redis.ttl(key)
        return max(0, seconds)

    async def delete(self, key: str) -> None:
        """``DEL``."""
        with _unavailable_on_error():
            await self._redis.delete(key)

    async def ping(self) -> None:
        """``PING``."""
        with _unavailable_on_error():
            await self._redis.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
