"""``Cache``, what services use, and ``create_cache``, which builds it from the settings."""

from __future__ import annotations

from posts_api.core.cache.counters import Counters
from posts_api.core.cache.memory import MemoryBackend
from posts_api.core.cache.redis import RedisBackend
from posts_api.core.cache.versioned import VersionedEntries
from posts_api.core.config import Settings


class Cache(VersionedEntries, Counters):
    """What services use: versioned entries, window counters, and fail-soft behaviour.

    No method raises because of the backend: a failure is logged once, the backend is bypassed,
    and a background task waits for it to answer again and then starts a new generation.
    """


def create_cache(settings: Settings) -> Cache:
    """Build the ``Cache`` that ``settings.cache_url`` names."""
    if settings.shared_cache:
        return Cache(RedisBackend(settings.cache_url, timeout=settings.cache_timeout_seconds))
    return Cache(MemoryBackend(settings.mem_cache_max_bytes))
