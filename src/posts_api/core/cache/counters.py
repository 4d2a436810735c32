"""Fixed-window counters (the login throttle's): count, read, time left, reset.

A counter's window starts at its first count and is not extended by later ones. Counters are
fail-soft like everything else: while the backend is away they read 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from posts_api.core.cache.healer import FailSoft


class Counters(FailSoft):
    """``counts``/``count``/``seconds_left``/``reset`` of named window counters."""

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
