"""One cache interface over two backends: bounded in-process memory and Redis.

``CACHE_URL=mem://`` keeps entries in this process (one worker only); ``redis://host:port/db``
shares them between workers and hosts. Services talk to ``Cache``, which adds three things on
top of a backend:

* **Versioned entries.** Each cached value is stored with the tag of the version it was built
  from; a write replaces the version with a fresh random token, so a reader that started before
  the write stores its result under a tag that no longer matches and can never bring back stale
  data. A read costs one round trip (``MGET`` of generation, version and value), several entries
  read together too (``get_fresh_many``).
* **Fail-soft.** A backend error never reaches the client: reads miss, writes are skipped, and
  a warning is logged. The cache is then bypassed until it answers again.
* **Too big is not unreachable.** A value the backend refuses (Redis's ``OOM`` or any other
  error reply, the in-process budget) is simply not stored: the backend answered, so nothing
  was missed and no outage starts. Callers also keep values small (``put_fresh`` is never
  given a list above ``POSTS_CACHE_MAX_ENTRY_BYTES``), so a write never times out on its size.
* **A new generation after an outage.** Writes made while the backend was unreachable could not
  invalidate anything, so, once it answers again, the first thing done is to replace the global
  generation token, which every entry's tag includes: all entries cached before the outage
  become misses, and no write made during it is hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Protocol, TypeVar

import redis.asyncio as redis
from cachetools import LRUCache
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from posts_api.core.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
HEAL_INTERVAL_SECONDS = 0.1
SEPARATOR = b"\n"


class CacheUnavailable(Exception):
    """The cache backend could not be reached or did not answer in time."""


class CacheRefused(Exception):
    """The backend answered, and refused the command (out of memory, value too large...)."""


class Backend(Protocol):
    """The few key-value operations ``Cache`` needs.

    Every method may raise ``CacheUnavailable`` (not reached) or ``CacheRefused`` (reached,
    said no).
    """

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the value of each key, ``None`` for a missing or expired one."""

    async def set(self, key: str, value: bytes, ttl: int | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: until evicted)."""

    async def count(self, keys: Sequence[str], window: int) -> None:
        """Add one to each counter; a new counter lives ``window`` seconds from now."""

    async def ttl(self, key: str) -> int:
        """Seconds until ``key`` expires; 0 when it is missing or has no expiry."""

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    async def ping(self) -> None:
        """Raise ``CacheUnavailable`` unless the backend answers."""

    async def close(self) -> None:
        """Release connections."""


class MemoryBackend:
    """An in-process LRU cache bounded in bytes, with per-entry expiry (``mem://``).

    Entries larger than the whole budget are refused (``CacheRefused``). Window counters (the
    login throttle's) live in a store of their own, bounded by count, so large cached lists can
    never evict them and lift the throttle. It is never unavailable, and it is not shared:
    ``posts-api serve`` refuses to run several workers on it.
    """

    ENTRY_OVERHEAD = 400  # bytes per entry beyond its value: key, tuple, LRU links (measured)
    MAX_COUNTERS = 100_000  # about 20 MB at most: emails and addresses with recent failures

    def __init__(self, max_bytes: int) -> None:
        """Keep at most about ``max_bytes`` of entries, evicting the least recently used."""
        self._entries: LRUCache[str, tuple[float, bytes]] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda entry: len(entry[1]) + self.ENTRY_OVERHEAD
        )
        self._counters: LRUCache[str, tuple[float, bytes]] = LRUCache(maxsize=self.MAX_COUNTERS)

    def _store(self, key: str) -> LRUCache[str, tuple[float, bytes]]:
        """The store that holds ``key``: a key made by ``count`` is a counter."""
        return self._counters if key in self._counters else self._entries

    def _get(self, key: str, now: float) -> bytes | None:
        store = self._store(key)
        entry = store.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del store[key]
            return None
        return entry[1]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the live value of each key."""
        now = time.monotonic()
        return [self._get(key, now) for key in keys]

    async def set(self, key: str, value: bytes, ttl: int | None) -> None:
        """Store a value; raise ``CacheRefused`` for one larger than the whole budget."""
        expires = time.monotonic() + ttl if ttl is not None else float("inf")
        try:
            self._entries[key] = (expires, value)
        except ValueError as exc:  # too large for the cache at all
            raise CacheRefused(f"{len(value)} bytes exceed the in-process cache") from exc

    async def count(self, keys: Sequence[str], window: int) -> None:
        """Increment fixed-window counters (stored as decimal bytes, like Redis)."""
        now = time.monotonic()
        for key in keys:
            entry = self._counters.get(key)
            if entry is None or entry[0] <= now:
                self._counters[key] = (now + window, b"1")
            else:
                self._counters[key] = (entry[0], b"%d" % (int(entry[1]) + 1))

    async def ttl(self, key: str) -> int:
        """Whole seconds left, rounded up."""
        entry = self._store(key).get(key)
        if entry is None or entry[0] == float("inf"):
            return 0
        return max(0, int(entry[0] - time.monotonic() + 0.999))

    async def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._store(key).pop(key, None)

    async def ping(self) -> None:
        """Memory is always there."""

    async def close(self) -> None:
        """Drop every entry and counter."""
        self._entries.clear()
        self._counters.clear()


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


class Cache:
    """What services use: versioned entries, window counters, and fail-soft behaviour.

    No method raises because of the backend: a failure is logged once, the backend is bypassed,
    and a background task waits for it to answer again and then starts a new generation.
    """

    def __init__(self, backend: Backend, namespace: str = "posts-api") -> None:
        """Wrap ``backend``; every key is prefixed with ``namespace``."""
        self.backend = backend
        self._gen_key = f"{namespace}:gen"
        self._ns = namespace
        self._healer: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        """False while the backend is being bypassed after an error."""
        return self._healer is None

    async def _attempt(
        self, operation: Callable[[], Awaitable[T]], default: T, *, refusable: bool = False
    ) -> T:
        """Run one backend operation; ``default`` when bypassed or when it fails (logged once).

        ``refusable``: a refusal (``CacheRefused``) only skips this operation. Only storing a
        value is refusable; a refused invalidation must be treated as an outage, since the
        stale entry it was meant to retire would otherwise keep being served.
        """
        if not self.available:
            return default
        try:
            return await operation()
        except CacheRefused as exc:
            if not refusable:
                self._failed(exc)
                return default
            log.info("cache refused a value, not cached: %s", exc)
            return default
        except CacheUnavailable as exc:
            self._failed(exc)
            return default

    # versioned entries ----------------------------------------------------------------------
    async def get_fresh(self, name: str) -> tuple[bytes | None, bytes | None]:
        """Return ``(value, tag)``: the entry if still current, and the tag for a fresh value.

        ``tag`` is what ``put_fresh`` needs to store a value computed now. Both are ``None``
        while the cache is unavailable.
        """
        return (await self.get_fresh_many((name,)))[0]

    async def get_fresh_many(self, names: Sequence[str]) -> list[tuple[bytes | None, bytes | None]]:
        """``get_fresh`` of several names in one round trip (one ``MGET``), in order."""
        keys = [self._gen_key]
        for name in names:
            keys += (f"{self._ns}:ver:{name}", f"{self._ns}:val:{name}")
        found = await self._attempt(lambda: self.backend.get_many(keys), None)
        if found is None:
            return [(None, None)] * len(names)
        gen = found[0] or b"-"
        entries: list[tuple[bytes | None, bytes | None]] = []
        for version, entry in zip(found[1::2], found[2::2], strict=True):
            tag = b"%s.%s" % (gen, version or b"-")
            value = None
            if entry is not None:
                stored_tag, _, stored = entry.partition(SEPARATOR)
                if stored_tag == tag:
                    value = stored
            entries.append((value, tag))
        return entries

    async def put_fresh(self, name: str, tag: bytes | None, value: bytes, ttl: int) -> None:
        """Store ``value`` as computed under ``tag`` (from ``get_fresh``), for ``ttl`` seconds."""
        if tag is not None:
            key, entry = f"{self._ns}:val:{name}", tag + SEPARATOR + value
            # Refusable: a value too large for the backend is not an outage (it answered).
            await self._attempt(lambda: self.backend.set(key, entry, ttl), None, refusable=True)

    async def invalidate(self, name: str, ttl: int) -> None:
        """Make every stored value of ``name`` stale: give it a new version token.

        ``ttl`` is the entries' lifetime; the version outlives them, so an entry can never
        outlast the version it was tagged with.
        """
        # Skipped while the backend is away: the new generation, once it is back, invalidates all.
        key = f"{self._ns}:ver:{name}"
        await self._attempt(lambda: self.backend.set(key, _token(), 2 * ttl + 60), None)

    # counters ---------------------------------------------------------------------------------
    async def counts(self, names: Sequence[str]) -> list[int]:
        """Current values of window counters (0 when missing or unavailable)."""
        keys = [self._counter(n) for n in names]
        missing: list[bytes | None] = [None] * len(keys)
        values = await self._attempt(lambda: self.backend.get_many(keys), missing)
        return [int(v) if v is not None else 0 for v in values]

    async def count(self, names: Sequence[str], window: int) -> None:
        """Add one to each counter; a counter's window starts at its first count."""
        keys = [self._counter(n) for n in names]
        await self._attempt(lambda: self.backend.count(keys, window), None)

    async def seconds_left(self, name: str) -> int:
        """Seconds until counter ``name`` resets (0 if unknown)."""
        return await self._attempt(lambda: self.backend.ttl(self._counter(name)), 0)

    async def reset(self, name: str) -> None:
        """Delete counter ``name``."""
        await self._attempt(lambda: self.backend.delete(self._counter(name)), None)

    def _counter(self, name: str) -> str:
        return f"{self._ns}:n:{name}"

    # health and life cycle --------------------------------------------------------------------
    async def check(self) -> bool:
        """Ask the backend directly whether it answers (used by ``/health``)."""
        try:
            await self.backend.ping()
        except (CacheUnavailable, CacheRefused):
            return False
        return True

    async def close(self) -> None:
        """Stop the healer and close the backend."""
        if self._healer is not None:
            self._healer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._healer
        await self.backend.close()

    def _failed(self, exc: Exception) -> None:
        """Start bypassing the backend and wait, in the background, for it to come back."""
        if self._healer is None:
            log.warning("cache unavailable, serving from the database: %s", exc)
            self._healer = asyncio.create_task(self._heal(), name="cache-healer")

    async def _heal(self) -> None:
        """Poll until a new generation can be written, then use the cache again."""
        while True:
            await asyncio.sleep(HEAL_INTERVAL_SECONDS)
            try:
                await self.backend.set(self._gen_key, _token(), None)
            except (CacheUnavailable, CacheRefused):  # no new generation yet: keep bypassing
                continue
            log.warning("cache reachable again; entries cached before the outage are dropped")
            self._healer = None
            return


def _token() -> bytes:
    """A version or generation token that is never reused."""
    return uuid.uuid4().hex.encode()


def create_cache(settings: Settings) -> Cache:
    """Build the ``Cache`` that ``settings.cache_url`` names."""
    if settings.shared_cache:
        return Cache(RedisBackend(settings.cache_url))
    return Cache(MemoryBackend(settings.mem_cache_max_bytes))
