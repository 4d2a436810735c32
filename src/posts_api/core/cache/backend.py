"""The ``Backend`` protocol: the few key-value operations ``Cache`` needs from a store.

Besides plain reads and writes, three compound operations are atomic on the store itself (Redis
runs them as scripts), since several hosts race on them: creating a missing key, and marking
and unmarking a version while a change is being written (``versioned`` says why).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MARK_PREFIX = b"w:"
"""A version key's value while a change is being written:
``w:<writers in progress>:<last writer's token>:<the version before the first of them>``.
Version tokens are hex, so they never start so."""


def new_token() -> bytes:
    """A version or generation token that is never reused (hex: never a mark)."""
    return uuid.uuid4().hex.encode()


@dataclass(frozen=True, slots=True)
class Marked:
    """What marking one version key found: the writers now in progress, the generation."""

    writers: int
    generation: bytes | None


@dataclass(frozen=True, slots=True)
class Unmark:
    """One writer's end of a change of version key ``key`` (see ``Backend.unmark``).

    ``token`` is the writer's mark; ``version`` the fresh version to set, for ``ttl`` seconds,
    if it is the last writer in progress. Only if no other writer marked the key since this one
    did: ``seed``, ``(key, value, ttl)``, is stored too, and with ``unchanged`` (a writer that
    was alone and changed nothing) the version from before the mark is put back instead, so
    the entries cached under it stay valid.
    """

    key: str
    token: bytes
    version: bytes
    ttl: int
    seed: tuple[str, bytes, int] | None = None
    unchanged: bool = False


class Backend(Protocol):
    """The few key-value operations ``Cache`` needs.

    Every method may raise ``CacheUnavailable`` (not reached) or ``CacheRefused`` (reached,
    said no).
    """

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the value of each key, ``None`` for a missing or expired one."""

    async def set(self, key: str, value: bytes, ttl: int | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: until evicted)."""

    async def create(self, items: Sequence[tuple[str, bytes, int | None]]) -> list[bytes]:
        """Set each missing key of ``(key, value, ttl)`` to its value; return each key's value.

        One round trip; a key set meanwhile by someone else keeps (and returns) their value.
        """

    async def mark(
        self, keys: Sequence[str], token: bytes, ttl: int, generation_key: str
    ) -> list[Marked]:
        """Mark each version key as being changed, for ``ttl`` seconds: one more writer.

        Sets a mark (``MARK_PREFIX``; a mark already there counts its writers); also reads the
        generation. One round trip.
        """

    async def unmark(self, ends: Sequence[Unmark]) -> None:
        """End one writer's change of each key (one round trip).

        While other writers of that key are in progress, it stays marked with one writer less;
        the last one (or a key whose mark was lost) gets the fresh version, or the version from
        before (``unchanged``). The seed is stored, and the version put back, only when the
        mark is still the writer's own (no one marked the key after it).
        """

    def watch_restarts(self, *, generation_key: str, server_key: str) -> None:
        """Start a new generation whenever the store may have lost or gone back on data.

        Redis: on each new connection, before any other command, compare the server's run id
        with ``server_key``'s value; when they differ (a restart, a restored snapshot, another
        server after a failover), write a new token to ``generation_key`` and the run id to
        ``server_key``. The in-process store cannot lose data behind the process's back.
        """

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
