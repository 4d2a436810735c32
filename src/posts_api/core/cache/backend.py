"""The ``Backend`` protocol: the few key-value operations ``Cache`` needs from a store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


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
