"""Post rules: ownership, the per-user list cache and its invalidation.

The list of a user's posts is cached as the exact JSON bytes of the response, so a hit costs one
cache round trip and no database call, no serialization. Every write by the user replaces the
list's version after the database has the change and before the client hears of it: their very
next GET /posts is a miss that sees the write, in any worker on any host sharing the cache.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.core.cache import Cache
from posts_api.core.errors import NotFound, Unauthorized
from posts_api.ops import metrics
from posts_api.posts.repository import PostRepository, UnknownOwner
from posts_api.posts.schemas import PostIn, PostList, PostOut


class PostNotFound(NotFound):
    """No such post for this user (it may exist for someone else: that looks the same)."""

    detail = "Post not found"


class OwnerGone(Unauthorized):
    """The token is valid but its user no longer exists."""

    detail = "User no longer exists"


class PostService:
    """The posts use cases, for one process: built once by ``create_app``, injected per request.

    Each method opens its own session only when it needs the database, so a cache hit never
    touches the connection pool; the session (and its connection) is released before the
    method returns.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], cache: Cache, list_ttl: int
    ) -> None:
        """Use ``sessions`` for the database, ``cache`` for lists kept ``list_ttl`` seconds."""
        self.sessions = sessions
        self.cache = cache
        self.list_ttl = list_ttl

    async def list_posts(self, user_id: int) -> bytes:
        """Return the user's posts, oldest first, as JSON bytes: from the cache, or one SELECT.

        A miss stores its result under the version it read before querying, so a write that
        lands in between makes this result stale at once instead of hiding the write.
        """
        name = _list_name(user_id)
        cached, tag = await self.cache.get_fresh(name)
        (metrics.counters.cache_miss if cached is None else metrics.counters.cache_hit).inc()
        if cached is not None:
            return cached
        async with self.sessions() as session:
            rows = await PostRepository(session).list_for_user(user_id)
        body = PostList.dump_json([PostOut.model_validate(row) for row in rows])
        await self.cache.put_fresh(name, tag, body, self.list_ttl)
        return body

    async def get_post(self, user_id: int, post_id: int) -> PostOut:
        """Return one of the user's posts (one SELECT). Raises ``PostNotFound``."""
        async with self.sessions() as session:
            row = await PostRepository(session).get_owned(post_id, user_id)
        if row is None:
            raise PostNotFound()
        return PostOut.model_validate(row)

    async def create_post(self, user_id: int, post: PostIn) -> int:
        """Store a new post and return its id (one INSERT). Raises ``OwnerGone``.

        Either way the user's cached list is dropped: a user removed from the database (their
        posts went with them) must not keep seeing a list cached while they existed.
        """
        try:
            async with self.sessions() as session:
                post_id = await PostRepository(session).add(user_id, post.text)
        except UnknownOwner:
            await self._invalidate(user_id)
            raise OwnerGone() from None
        await self._invalidate(user_id)
        return post_id

    async def update_post(self, user_id: int, post_id: int, post: PostIn) -> PostOut:
        """Replace a post's text and return the post (UPDATE, plus a SELECT without RETURNING).

        Raises ``PostNotFound``.
        """
        async with self.sessions() as session:
            row = await PostRepository(session).update_owned(post_id, user_id, post.text)
        if row is None:
            raise PostNotFound()
        await self._invalidate(user_id)
        return PostOut.model_validate(row)

    async def delete_post(self, user_id: int, post_id: int) -> None:
        """Delete a post (one DELETE; its row count tells a 404). Raises ``PostNotFound``."""
        async with self.sessions() as session:
            deleted = await PostRepository(session).delete_owned(post_id, user_id)
        if not deleted:
            raise PostNotFound()
        await self._invalidate(user_id)

    async def _invalidate(self, user_id: int) -> None:
        """Make the user's cached list stale (after the database has the change)."""
        await self.cache.invalidate(_list_name(user_id), self.list_ttl)


def _list_name(user_id: int) -> str:
    return f"posts:{user_id}"
