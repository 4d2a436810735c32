"""The session check every protected request runs.

The database is the truth, the cache makes it fast. The cache entry ``session:{sid}`` holds
``live:{user_id}`` or ``ended``. A hit answers with no database statement; a miss (or an
unreachable cache) asks the database with one SELECT and caches the answer under the tag read
before it, so a revocation landing in between wins. Every revocation writes the database first,
then invalidates the entry (``forget``) before answering; if the cache is down meanwhile, it
starts a new generation once back: nothing stale survives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.auth.repository import SessionRepository
from posts_api.core.cache import Cache
from posts_api.core.security import Entry, InvalidToken

ENDED = b"ended"


def session_entry(session_id: str) -> str:
    """The cache entry name of a session's state."""
    return f"session:{session_id}"


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
        self, *, user_id: int, session_id: str, prefetch: Sequence[str] = ()
    ) -> tuple[Entry, ...]:
        """Raise ``InvalidToken`` unless the session is live and the user's.

        One cache round trip reads the session's entry and the ``prefetch`` entries together;
        only a miss costs a SELECT. Returns the ``prefetch`` entries, in order.
        """
        name = session_entry(session_id)
        (state, tag), *rest = await self.cache.get_fresh_many((name, *prefetch))
        if state is None:
            async with self.sessions() as session:
                owner = await SessionRepository(session).live_owner(session_id=session_id)
            state = ENDED if owner is None else b"live:%d" % owner
            await self.cache.put_fresh(name, tag, state, self.ttl)
        if state != b"live:%d" % user_id:  # ended, or (with a forged sub) someone else's
            raise InvalidToken("session ended")
        return tuple(rest)

    async def forget(self, session_ids: Iterable[str]) -> None:
        """Invalidate the cached state of sessions that just ended (after the database write)."""
        for session_id in session_ids:
            await self.cache.invalidate(session_entry(session_id), self.ttl)
