"""Versioned entries: cached values that a write can make stale, race-free.

Each cached value is stored with the tag of the version it was built from (the generation token
and the entry's version token); a write replaces the version with a fresh random token, so a
reader that started before the write stores its result under a tag that no longer matches and
can never bring back stale data. A read costs one round trip (``MGET`` of generation, version
and value), several entries read together too (``get_fresh_many``).
"""

from __future__ import annotations

from collections.abc import Sequence

from posts_api.core.cache.healer import FailSoft, new_token

SEPARATOR = b"\n"
"""Between an entry's tag and its value in the stored bytes (tags never contain it)."""


class VersionedEntries(FailSoft):
    """``get_fresh``/``put_fresh``/``invalidate``: values tagged with the version they are of."""

    async def get_fresh(self, name: str) -> tuple[bytes | None, bytes | None]:
        """Return ``(value, tag)``: the entry if still current, and the tag for a fresh value.

        ``tag`` is what ``put_fresh`` needs to store a value computed now. Both are ``None``
        while the cache is unavailable.
        """
        return (await self.get_fresh_many((name,)))[0]

    async def get_fresh_many(self, names: Sequence[str]) -> list[tuple[bytes | None, bytes | None]]:
        """``get_fresh`` of several names in one round trip (one ``MGET``), in order."""
        keys = [self._gen_key]
        for name in names:
            keys += (f"{self._ns}:ver:{name}", f"{self._ns}:val:{name}")
        found = await self._attempt(lambda: self.backend.get_many(keys), None)
        if found is None:
            return [(None, None)] * len(names)
        gen = found[0] or b"-"
        entries: list[tuple[bytes | None, bytes | None]] = []
        for version, entry in zip(found[1::2], found[2::2], strict=True):
            tag = b"%s.%s" % (gen, version or b"-")
            value = None
            if entry is not None:
                stored_tag, _, stored = entry.partition(SEPARATOR)
                if stored_tag == tag:
                    value = stored
            entries.append((value, tag))
        return entries

    async def put_fresh(self, name: str, tag: bytes | None, value: bytes, ttl: int) -> None:
        """Store ``value`` as computed under ``tag`` (from ``get_fresh``), for ``ttl`` seconds."""
        if tag is not None:
            key, entry = f"{self._ns}:val:{name}", tag + SEPARATOR + value
            # Refusable: a value too large for the backend is not an outage (it answered).
            await self._attempt(lambda: self.backend.set(key, entry, ttl), None, refusable=True)

    async def invalidate(self, name: str, ttl: int) -> None:
        """Make every stored value of ``name`` stale: give it a new version token.

        ``ttl`` is the entries' lifetime; the version outlives them, so an entry can never
        outlast the version it was tagged with.
        """
        # Skipped while the backend is away: the new generation, once it is back, invalidates all.
        key = f"{self._ns}:ver:{name}"
        await self._attempt(lambda: self.backend.set(key, new_token(), 2 * ttl + 60), None)
