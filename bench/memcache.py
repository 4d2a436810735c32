"""Memory of the in-process cache (``mem://``) holding many users' lists: bounded or not.

Run as its own process (``python -m bench.memcache --users N --out FILE``) so the resident
memory it reports is the cache's and nothing else's. For each of N users it does what the
service does for a user who wrote and then read: a new version (``invalidate``), a miss
(``get_fresh``) and a stored list (``put_fresh``) of ten 150-character posts, packed in the
service's own entry format (``posts.listing``). Then it counts how many users' lists are still
cached, with the cache's public API, and reports the process's RSS before, after and at its
peak next to the cache's byte budget (``MEM_CACHE_MAX_BYTES``, default 64 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
from collections.abc import Sequence
from pathlib import Path

from bench.seed import post_text
from bench.servers import rss_self_mib
from posts_api.core.cache import Cache, MemoryBackend
from posts_api.core.config import Settings
from posts_api.posts.listing import CachedList, serialize
from posts_api.posts.schemas import PostOut
from posts_api.posts.service import list_name

TTL_S = 300


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (``VmHWM`` is the peak RSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def list_body(user_id: int, posts: int, chars: int, now: dt.datetime) -> bytes:
    """A user's list as the service caches it: the packed entry of ``posts.listing``."""
    ids = [user_id * posts + k for k in range(posts)]
    items = [
        serialize(PostOut(post_id=i, text=post_text(i, chars), created_at=now, updated_at=now))
        for i in ids
    ]
    return CachedList.build(user_id=user_id, ids=ids, items=items).pack()


async def measure(users: int, posts: int, chars: int) -> dict[str, float | int]:
    """Fill a fresh cache with ``users`` lists and report what it kept and what it cost."""
    budget = int(Settings.model_fields["mem_cache_max_bytes"].default)
    cache = Cache(MemoryBackend(budget))
    now = dt.datetime.now(dt.UTC)
    sample = list_body(1, posts, chars, now)
    gc.collect()
    before = rss_self_mib()
    for user_id in range(1, users + 1):
        name = list_name(user_id)
        await cache.invalidate(name)
        _, tag = await cache.get_fresh(name)
        await cache.put_fresh(name, tag, list_body(user_id, posts, chars, now), TTL_S)
    gc.collect()
    after = rss_self_mib()
    cached = 0
    for user_id in range(1, users + 1):
        value, _ = await cache.get_fresh(list_name(user_id))
        cached += value is not None
    return {
        "users": users,
        "body_bytes": len(sample),
        "budget_mib": budget / 2**20,
        "users_cached": cached,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "rss_peak_mib": round(_status_mib("VmHWM"), 1),
        "growth_mib": round(after - before, 1),
        "values_cached_mib": round(cached * len(sample) / 2**20, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``--users``, ``--posts``, ``--chars``, ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench.memcache", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=10)
    parser.add_argument("--chars", type=int, default=150)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.users, args.posts, args.chars))
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
