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

    async def count(self, keys: Sequence[str], window: int) -> list[tuple[int, int]]:
        """Add one to each counter; return each one's new value and seconds left, in order.

        Atomic per counter: of concurrent counts each gets a value of its own. A new counter
        (or one whose window has ended) lives ``window`` seconds from now.
        """

    async def uncount(self, keys: Sequence[str], clear: Sequence[str]) -> None:
        """Take one back from each counter of ``keys``, delete each of ``clear``.

        A counter never goes below 0 and keeps its window.
        """

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    async def ping(self) -> None:
        """Raise ``CacheUnavailable`` unless the backend answers."""

    async def close(self) -> None:
        """Release connections."""
