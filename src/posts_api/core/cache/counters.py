"""Fixed-window counters (the login throttle's): count first, then take back or clear.

A counter's window starts at its first count and is not extended by later ones. ``count`` adds
one and returns the new values in the same step (Redis ``INCR``; the in-process backend has no
``await`` between reading and writing), so callers compare what they counted, never a value
read before others counted: however many count at once, each sees a value of its own.

Counters degrade instead of opening: while the shared backend is unreachable, they count in this
process (a bounded in-process store, as ``mem://`` keeps them), so a limit enforced on them
becomes at most (processes x the limit) meanwhile, never none. Once the backend answers again,
counting goes back to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from posts_api.core.cache.backend import Backend
from posts_api.core.cache.healer import FailSoft
from posts_api.core.cache.memory import MemoryBackend


@dataclass(frozen=True)
class Tally:
    """What one ``count`` did: each counter's value after it and seconds left, and where.

    ``local`` is true when the shared backend was unreachable and this process counted alone;
    ``uncount`` must then take back from the same place.
    """

    values: list[int]
    seconds_left: list[int]
    local: bool


class Counters(FailSoft):
    """``count``/``uncount`` of named window counters, shared, or in-process while unreachable."""

    def __init__(self, backend: Backend, namespace: str = "posts-api") -> None:
        """Wrap ``backend``; the in-process fallback starts empty."""
        super().__init__(backend, namespace)
        self._local = MemoryBackend(max_bytes=0)  # its counters only: a store of their own

    async def count(self, names: Sequence[str], window: int) -> Tally:
        """Add one to each counter and return the new values (a new counter lives ``window``)."""
        keys = [self._counter(n) for n in names]
        shared = await self._attempt(lambda: self.backend.count(keys, window), None)
        counted = shared if shared is not None else await self._local.count(keys, window)
        return Tally(
            values=[value for value, _ in counted],
            seconds_left=[seconds for _, seconds in counted],
            local=shared is None,
        )

    async def uncount(
        self, names: Sequence[str], *, local: bool, clear: Sequence[str] = ()
    ) -> None:
        """Take one back from each of ``names`` and delete each of ``clear``, where counted.

        A counter never goes below 0 and keeps its window. ``local``: the ``Tally.local`` of
        the count being taken back. If the backend fails meanwhile, nothing is taken back: the
        counters only overcount, until their window ends. A take-back that comes after its
        window ended and another began takes one from the new window (lenient by the few
        attempts that straddle the boundary).
        """
        keys = [self._counter(n) for n in names]
        cleared = [self._counter(n) for n in clear]
        if local:
            await self._local.uncount(keys, cleared)
        else:
            await self._attempt(lambda: self.backend.uncount(keys, cleared), None)

    def _counter(self, name: str) -> str:
        return f"{self._ns}:n:{name}"
