"""The in-process backend (``CACHE_URL=mem://``): a byte-bounded LRU with per-entry expiry.

Window counters (the login throttle's) live in a store of their own, bounded by count, so large
cached lists can never evict them and lift the throttle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from cachetools import LRUCache

from posts_api.core.cache.backend import MARK_PREFIX, Marked, Unmark
from posts_api.core.cache.errors import CacheRefused


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

    async def create(self, items: Sequence[tuple[str, bytes, int | None]]) -> list[bytes]:
        """Set the missing keys; return every key's value."""
        now = time.monotonic()
        found = []
        for key, value, ttl in items:
            current = self._get(key, now)
            if current is None:
                await self.set(key, value, ttl)
                current = value
            found.append(current)
        return found

    async def mark(
        self, keys: Sequence[str], token: bytes, ttl: int, generation_key: str
    ) -> list[Marked]:
        """Count one more writer on each version key (no await in between: atomic here)."""
        now = time.monotonic()
        generation = self._get(generation_key, now)
        marked = []
        for key in keys:
            writers, _, prior = _mark_of(self._get(key, now))
            mark = _mark(writers + 1, token, prior)
            self._entries[key] = (now + ttl, mark)
            marked.append(Marked(writers + 1, generation))
        return marked

    async def unmark(self, ends: Sequence[Unmark]) -> None:
        """One writer less on each key; the last one sets the version (and the seed)."""
        now = time.monotonic()
        for end in ends:
            writers, token, prior = _mark_of(self._get(end.key, now))
            if writers > 1 and token is not None:
                expires = self._entries[end.key][0]
                self._entries[end.key] = (expires, _mark(writers - 1, token, prior))
                continue
            own = token == end.token
            version = prior if own and end.unchanged and prior else end.version
            self._entries[end.key] = (now + end.ttl, version)
            if end.seed is not None and own:
                key, value, ttl = end.seed
                await self.set(key, value, ttl)

    def watch_restarts(self, *, generation_key: str, server_key: str) -> None:
        """Nothing to watch: this store lives and dies with the process."""

    async def count(self, keys: Sequence[str], window: int) -> list[tuple[int, int]]:
        """Increment fixed-window counters (stored as decimal bytes, like Redis).

        No ``await`` between reading and writing: atomic within the process.
        """
        now = time.monotonic()
        counted = []
        for key in keys:
            entry = self._counters.get(key)
            if entry is None or entry[0] <= now:
                entry = (now + window, b"1")
            else:
                entry = (entry[0], b"%d" % (int(entry[1]) + 1))
            self._counters[key] = entry
            # Whole seconds left, rounded up.
            counted.append((int(entry[1]), max(1, int(entry[0] - now + 0.999))))
        return counted

    async def uncount(self, keys: Sequence[str], clear: Sequence[str]) -> None:
        """Take one back from live counters above 0; forget the ``clear`` ones."""
        now = time.monotonic()
        for key in keys:
            entry = self._counters.get(key)
            if entry is not None and entry[0] > now and int(entry[1]) > 0:
                self._counters[key] = (entry[0], b"%d" % (int(entry[1]) - 1))
        for key in clear:
            self._counters.pop(key, None)

    async def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._store(key).pop(key, None)

    async def ping(self) -> None:
        """Memory is always there."""

    async def close(self) -> None:
        """Drop every entry and counter."""
        self._entries.clear()
        self._counters.clear()


def _mark(writers: int, token: bytes, prior: bytes) -> bytes:
    """A mark: ``w:<writers>:<last writer's token>:<version before the first writer>``."""
    return b"%s%d:%s:%s" % (MARK_PREFIX, writers, token, prior)


def _mark_of(value: bytes | None) -> tuple[int, bytes | None, bytes]:
    """``(writers, token, prior version)`` of a mark; ``(0, None, value)`` for a version."""
    if value is None or not value.startswith(MARK_PREFIX):
        return 0, None, value or b""
    writers, token, prior = value[len(MARK_PREFIX) :].split(b":", 2)
    return int(writers), token, prior
