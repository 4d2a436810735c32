"""Fail-soft use of a backend, and the healer that brings it back with a new generation.

A backend error never reaches the client: the operation returns its default, a warning is
logged once, and the backend is bypassed. A background task (the healer) polls until it can
write a new generation token, which every versioned entry's tag includes: entries cached before
the outage become misses, since writes made during it could not invalidate them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from posts_api.core.cache.backend import Backend, new_token
from posts_api.core.cache.errors import CacheRefused, CacheUnavailable

log = logging.getLogger("posts_api.core.cache")

T = TypeVar("T")
HEAL_INTERVAL_SECONDS = 0.1


class FailSoft:
    """A backend used fail-soft, under a key namespace: the base of ``Cache``.

    No operation run through ``attempt`` raises because of the backend: a failure is logged
    once, the backend is bypassed, and a background task waits for it to answer again and then
    starts a new generation.
    """

    def __init__(self, backend: Backend, namespace: str = "posts-api") -> None:
        """Wrap ``backend``; every key is prefixed with ``namespace``."""
        self.backend = backend
        self._gen_key = f"{namespace}:gen"
        self._ns = namespace
        self._healer: asyncio.Task[None] | None = None
        # A restarted, restored or replaced Redis may hold older data: a new generation.
        backend.watch_restarts(generation_key=self._gen_key, server_key=f"{namespace}:server")

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
                await self.backend.set(self._gen_key, new_token(), None)
            except (CacheUnavailable, CacheRefused):  # no new generation yet: keep bypassing
                continue
            log.warning("cache reachable again; entries cached before the outage are dropped")
            self._healer = None
            return
