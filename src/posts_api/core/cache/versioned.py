"""Versioned entries: cached values that a change can make stale, race-free, whatever Redis loses.

Each cached value is stored with the tag of the version it was built from (the generation token
and its group's version token). Entries are named ``(group, item)``; one version covers a whole
group (a user's sessions), and a plain name is a group of one entry (a user's list).

* **A read** costs one round trip (``MGET`` of generation, versions and values). A value counts
  only if its tag is the current one. The tag it returns is what a value computed *now* may be
  stored under, so a change landing after the read makes that value stale at once.
* **Nothing missing ever matches.** A missing generation or version (never set, evicted, lost in
  a restart) is created before the read returns (``SET NX`` + ``GET``: one more round trip, on
  that path only), and values are only ever stored under real tokens: whatever Redis loses, what
  it still holds can no longer match. A restarted, restored or replaced Redis is noticed on the
  first connection to it (``Backend.watch_restarts``), which starts a new generation.
* **A change holds or is refused** (``changing``). Before the database is written, each group's
  version is *marked* (``w:...``, for ``MARK_SECONDS``, longer than any database write); if
  that fails, ``CacheUnavailable`` is raised and the caller must refuse the change (a 503)
  with nothing written. While a group is marked, reads return no tag, so nothing is stored and
  every reader goes to the database. After the write, the last writer in progress sets a fresh
  version. If that fails, or the request is cancelled before it, the mark expires by itself and
  the next read creates a version: correct either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from posts_api.core.cache.backend import MARK_PREFIX, Unmark, new_token
from posts_api.core.cache.errors import CacheRefused, CacheUnavailable
from posts_api.core.cache.healer import FailSoft

SEPARATOR = b"\n"
"""Between an entry's tag and its value in the stored bytes (tags never contain it)."""

VERSION_SECONDS = 86_400
"""A version's lifetime: a group unused for a day forgets it (a version that expires is only a
miss, since a missing version is created anew and never matches an older entry)."""

MARK_SECONDS = 120
"""How long a mark holds if its writer never ends it (a crash): longer than any database write
(the pool wait and MariaDB's 50-second lock wait included)."""

EntryName = str | tuple[str, str]
"""``(group, item)``: an entry under its group's version; a plain ``name`` is ``(name, "")``."""

Read = tuple[bytes | None, bytes | None]
"""``(value, tag)``: the entry if current, and the tag to store a value computed now under
(``None`` while the cache is unavailable or the group is being changed)."""


@dataclass
class Change:
    """A change in progress (``VersionedEntries.changing``): its marks, and what to seed."""

    token: bytes
    alone: dict[str, bool]
    generation: bytes | None
    seeds: dict[str, tuple[str, bytes, int]] = field(default_factory=dict)
    unchanged: bool = False

    def seed(self, name: tuple[str, str], value: bytes, ttl: int) -> None:
        """Store ``value`` for ``name`` under the group's fresh version, when the change ends.

        Only if no other change of the group overlapped this one (then the value, read inside
        this change, is still true under the fresh version); otherwise nothing is stored.
        """
        group, _ = name
        if self.alone.get(group) and self.generation is not None:
            self.seeds[group] = (name[1], value, ttl)


class VersionedEntries(FailSoft):
    """``get_fresh``/``put_fresh``/``changing``: values tagged with the version they are of."""

    async def get_fresh(self, name: EntryName) -> Read:
        """Return ``(value, tag)``: the entry if still current, and the tag for a fresh value."""
        return (await self.get_fresh_many((name,)))[0]

    async def get_fresh_many(self, names: Sequence[EntryName]) -> list[Read]:
        """``get_fresh`` of several names in one round trip (one ``MGET``), in order.

        A second round trip only when the generation or a version is missing (it is created).
        """
        keys = [self._gen_key]
        for name in names:
            group, item = (name, "") if isinstance(name, str) else name
            keys += (self._version_key(group), self._value_key(group, item))
        found = await self._attempt(lambda: self.backend.get_many(keys), None)
        if found is None:
            return [(None, None)] * len(names)
        # The generation, then each version: a missing one is created before anything is read.
        if missing := [i for i in (0, *range(1, len(keys), 2)) if found[i] is None]:
            items = [(keys[i], new_token(), VERSION_SECONDS if i else None) for i in missing]
            created = await self._attempt(lambda: self.backend.create(items), None)
            if created is None:
                return [(None, None)] * len(names)
            for i, token in zip(missing, created, strict=True):
                found[i] = token
        gen = found[0]
        entries: list[Read] = []
        for version, entry in zip(found[1::2], found[2::2], strict=True):
            if version is None or version.startswith(MARK_PREFIX):
                entries.append((None, None))  # being changed: read the database, store nothing
                continue
            tag = b"%s.%s" % (gen, version)
            value = None
            if entry is not None:
                stored_tag, _, stored = entry.partition(SEPARATOR)
                if stored_tag == tag:
                    value = stored
            entries.append((value, tag))
        return entries

    async def put_fresh(self, name: EntryName, tag: bytes | None, value: bytes, ttl: int) -> None:
        """Store ``value`` as computed under ``tag`` (from ``get_fresh``), for ``ttl`` seconds."""
        if tag is not None:
            group, item = (name, "") if isinstance(name, str) else name
            key, entry = self._value_key(group, item), tag + SEPARATOR + value
            # Refusable: a value too large for the backend is not an outage (it answered).
            await self._attempt(lambda: self.backend.set(key, entry, ttl), None, refusable=True)

    async def invalidate(self, group: str) -> None:
        """Make every stored value of ``group`` stale now: give it a new version token.

        Fail-soft, so it cannot make a change hold on other hosts: use ``changing`` for that.
        """
        key = self._version_key(group)
        await self._attempt(lambda: self.backend.set(key, new_token(), VERSION_SECONDS), None)

    @asynccontextmanager
    async def changing(
        self, *groups: str, unchanged_by: tuple[type[BaseException], ...] = ()
    ) -> AsyncIterator[Change]:
        """Mark ``groups`` as being changed for the duration of the block (the database write).

        Raises ``CacheUnavailable`` before the block runs when the marks cannot be set (the
        cache is unreachable or refuses): the caller must then change nothing. The marks are
        tried even while reads bypass the cache after an error: a cache that answers again
        takes the change at once, before the healer's next poll. On the way out, however the
        block ends (an error, a cancellation), each group gets a fresh version, best effort: an
        unended mark expires after ``MARK_SECONDS``. A block that raises one of
        ``unchanged_by`` (errors that say nothing was written) puts the previous version back
        instead, when no other change overlapped: the entries cached under it stay valid.
        """
        token = new_token()
        keys = [self._version_key(group) for group in groups]
        try:
            marked = await self.backend.mark(keys, token, MARK_SECONDS, self._gen_key)
        except (CacheUnavailable, CacheRefused) as exc:
            self._failed(exc)
            raise CacheUnavailable(f"cannot mark a change in the cache: {exc}") from exc
        generation = marked[0].generation if marked else None
        alone = {group: m.writers == 1 for group, m in zip(groups, marked, strict=True)}
        change = Change(token, alone, generation)
        try:
            yield change
        except unchanged_by:
            change.unchanged = True
            raise
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled request still ends its marks
                await self._unmark(change, groups)

    async def _unmark(self, change: Change, groups: Sequence[str]) -> None:
        """End the change's marks, straight on the backend, also while reads bypass it.

        The marks went through: left to expire, they would only keep the groups uncached.
        """
        try:
            await self.backend.unmark(self._ends(change, groups))
        except (CacheUnavailable, CacheRefused) as exc:
            self._failed(exc)

    def _ends(self, change: Change, groups: Sequence[str]) -> list[Unmark]:
        """The ``Unmark`` of each group: a fresh version, and the seed if there is one."""
        ends = []
        for group in groups:
            version = new_token()
            seed = None
            if (seeded := change.seeds.get(group)) is not None and change.generation is not None:
                item, value, ttl = seeded
                tag = b"%s.%s" % (change.generation, version)
                seed = (self._value_key(group, item), tag + SEPARATOR + value, ttl)
            key = self._version_key(group)
            unchanged = change.unchanged and change.alone[group]
            ends.append(Unmark(key, change.token, version, VERSION_SECONDS, seed, unchanged))
        return ends

    def _version_key(self, group: str) -> str:
        return f"{self._ns}:ver:{group}"

    def _value_key(self, group: str, item: str) -> str:
        return f"{self._ns}:val:{group}:{item}" if item else f"{self._ns}:val:{group}"
