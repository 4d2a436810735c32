"""One cache interface over two backends: bounded in-process memory and Redis.

``CACHE_URL=mem://`` keeps entries in this process (one worker only); ``redis://host:port/db``
shares them between workers and hosts. Services talk to ``Cache``, which adds, on top of a
backend:

* **Versioned entries** (``versioned``). Each cached value is stored with the tag of the version
  it was built from; a change marks the version before the database is written and replaces
  it after, so a reader that started before the change can never bring back stale data, and
  a missing version or generation never matches anything (whatever Redis loses). A read costs
  one round trip.
* **Counters** (``counters``): fixed-window counters for the login throttle.
* **Fail-soft** (``healer``). A backend error never reaches a reader: reads miss, values are not
  stored, and a warning is logged. The cache is then bypassed until it answers again, and the
  first thing done then is to start a new generation: every entry cached before the outage
  becomes a miss. Only a change raises (``CacheUnavailable`` from ``changing``), before
  anything is written: it could not be made to hold on other hosts, so it must be refused.
* **Too big is not unreachable** (``errors``). A value the backend refuses (Redis's ``OOM`` or
  any other error reply, the in-process budget) is simply not stored: ``CacheRefused``, not
  ``CacheUnavailable``, so no outage starts. Callers also keep values small (``put_fresh`` is
  never given a list above ``POSTS_CACHE_MAX_ENTRY_BYTES``).

Modules: ``errors`` (the two failures), ``backend`` (the protocol), ``memory`` and ``redis``
(the backends; ``resp`` is the Redis backend's small pipelined client, and says why it is not
redis-py), ``healer``, ``versioned``, ``counters``, and ``facade`` (``Cache`` and
``create_cache``).
"""

from posts_api.core.cache.backend import Backend
from posts_api.core.cache.errors import CacheRefused, CacheUnavailable
from posts_api.core.cache.facade import Cache, create_cache
from posts_api.core.cache.memory import MemoryBackend
from posts_api.core.cache.redis import RedisBackend

__all__ = [
    "Backend",
    "Cache",
    "CacheRefused",
    "CacheUnavailable",
    "MemoryBackend",
    "RedisBackend",
    "create_cache",
]
