"""The session check every protected request runs, and how revocations reach every host.

The database is the truth, the cache makes it fast. Session states are cached per user, under
one version for all of the user's sessions: the entry ``(sessions:{user_id}, {sid})`` holds
``live:{user_id}`` or ``ended``. A hit answers with no database statement; a miss (or an
unreachable cache) asks the database with one SELECT and caches the answer under the tag read
before it, so a revocation landing in between wins.

A revocation runs inside ``ending(user_id)``: the user's version is marked before the database
is written (if that fails, ``CacheUnavailable``: the revocation is refused, nothing written),
so no host serves or stores a cached state meanwhile, and it gets a fresh version afterwards.
One mark covers every session of the user, those a revocation ends in bulk included (no need
to read their ids back). A session that starts is seeded as live (``seed``), so its first
request costs no SELECT.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.auth.repository import SessionRepository
from posts_api.core.cache import Cache
from posts_api.core.cache.versioned import Change, EntryName
from posts_api.core.security import Entry, InvalidToken

ENDED = b"ended"


def sessions_group(user_id: int) -> str:
    """The cache group of a user's sessions: one version for all of them."""
    return f"sessions:{user_id}"


def session_entry(user_id: int, session_id: str) -> tuple[str, str]:
    """The cache entry name of a session's state."""
    return (sessions_group(user_id), session_id)


def _live(user_id: int) -> bytes:
    return b"live:%d" % user_id


class SessionCheck:
    """The auth domain's ``SessionGuard``: tells whether a session is live, and whose."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], cache: Cache, *, ttl: int
    ) -> None:
        """Keep answers in ``cache`` for ``ttl`` seconds (an access token's lifetime)."""
        self.sessions = sessions
        self.cache = cache
        self.ttl = ttl

    async def check(
        self, *, user_id: int, session_id: str, prefetch: Sequence[EntryName] = ()
    ) -> tuple[Entry, ...]:
        """Raise ``InvalidToken`` unless the session is live and the user's.

        One cache round trip reads the session's entry and the ``prefetch`` entries together;
        only a miss costs a SELECT. Returns the ``prefetch`` entries, in order.
        """
        name = session_entry(user_id, session_id)
        (state, tag), *rest = await self.cache.get_fresh_many((name, *prefetch))
        if state is None:
            async with self.sessions() as session:
                owner = await SessionRepository(session).live_owner(session_id=session_id)
            state = ENDED if owner is None else _live(owner)
            await self.cache.put_fresh(name, tag, state, self.ttl)
        if state != _live(user_id):  # ended, or (with a forged sub) someone else's
            raise InvalidToken("session ended")
        return tuple(rest)

    def ending(self, *, user_id: int) -> AbstractAsyncContextManager[Change]:
        """Wrap a revocation of the user's sessions (the database write goes in the block).

        Raises ``CacheUnavailable`` before the block when the change cannot be made to hold on
        every host: refuse it then (a 503), nothing written.
        """
        return self.cache.changing(sessions_group(user_id))

    async def version(self, *, user_id: int) -> bytes | None:
        """The tag a session of the user started from now on may be seeded under (``seed``).

        Read it *before* the session's INSERT: a revocation that ends the new session after
        the INSERT replaces that version, so the seed can then never match.
        """
        return (await self.cache.get_fresh(session_entry(user_id, "")))[1]

    async def seed(self, *, user_id: int, session_id: str, version: bytes | None) -> None:
        """Cache a session just started as live, under ``version`` (from ``version``)."""
        await self.cache.put_fresh(
            session_entry(user_id, session_id), version, _live(user_id), self.ttl
        )

    def seed_in(self, change: Change, *, user_id: int, session_id: str) -> None:
        """Cache a session started inside the revocation ``change`` as live, when it ends.

        Stored under the fresh version only if no other revocation of the user overlapped.
        """
        change.seed(session_entry(user_id, session_id), _live(user_id), self.ttl)
