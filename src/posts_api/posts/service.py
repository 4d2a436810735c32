"""Post rules: ownership, the per-user list cache and its invalidation.

The list of a user's posts is cached as the exact JSON bytes of the response, so a hit costs one
cache round trip and no database call, no serialization. Every write by the user replaces the
list's version after the database has the change and before the client hears of it: their very
next GET /posts is a miss that sees the write, in any worker on any host sharing the cache.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from posts_api.core.cache import Cache
from posts_api.core.config import Settings
from posts_api.core.errors import NotFound, Unauthorized
from posts_api.posts.repository import PostRepository, UnknownOwner
from posts_api.posts.schemas import PostIn, PostList, PostOut


class PostNotFound(NotFound):
    """No such post for this user (it may exist for someone else: that looks the same)."""

    detail = "Post not found"


class OwnerGone(Unauthorized):
    """The token is valid but its user no longer exists."""

    detail = "User no longer exists"


def _list_name(user_id: int) -> str:
    return f"posts:{user_id}"


async def list_posts(
    session: AsyncSession, cache: Cache, settings: Settings, user_id: int
) -> bytes:
    """Return the user's posts, oldest first, as JSON bytes: from the cache, or one SELECT.

    A miss stores its result under the version it read before querying, so a write that lands
    in between makes this result stale at once instead of hiding the write.
    """
    name = _list_name(user_id)
    cached, tag = await cache.get_fresh(name)
    if cached is not None:
        return cached
    rows = await PostRepository(session).list_for_user(user_id)
    body = PostList.dump_json([PostOut.model_validate(row) for row in rows])
    await cache.put_fresh(name, tag, body, settings.posts_cache_ttl_seconds)
    return body


async def get_post(session: AsyncSession, user_id: int, post_id: int) -> PostOut:
    """Return one of the user's posts (one SELECT). Raises ``PostNotFound``."""
    row = await PostRepository(session).get_owned(post_id, user_id)
    if row is None:
        raise PostNotFound()
    return PostOut.model_validate(row)


async def create_post(
    session: AsyncSession, cache: Cache, settings: Settings, user_id: int, post: PostIn
) -> int:
    """Store a new post and return its id (one INSERT). Raises ``OwnerGone``.

    Either way the user's cached list is dropped: a user removed from the database (their
    posts went with them) must not keep seeing a list cached while they existed.
    """
    name = _list_name(user_id)
    try:
        post_id = await PostRepository(session).add(user_id, post.text)
    except UnknownOwner:
        await cache.invalidate(name, settings.posts_cache_ttl_seconds)
        raise OwnerGone() from None
    await cache.invalidate(name, settings.posts_cache_ttl_seconds)
    return post_id


async def update_post(
    session: AsyncSession,
    cache: Cache,
    settings: Settings,
    user_id: int,
    post_id: int,
    post: PostIn,
) -> PostOut:
    """Replace a post's text and return the post (UPDATE, plus a SELECT without RETURNING).

    Raises ``PostNotFound``.
    """
    row = await PostRepository(session).update_owned(post_id, user_id, post.text)
    if row is None:
        raise PostNotFound()
    await cache.invalidate(_list_name(user_id), settings.posts_cache_ttl_seconds)
    return PostOut.model_validate(row)


async def delete_post(
    session: AsyncSession, cache: Cache, settings: Settings, user_id: int, post_id: int
) -> None:
    """Delete a post (one DELETE; its row count tells a missing post). Raises ``PostNotFound``."""
    if not await PostRepository(session).delete_owned(post_id, user_id):
        raise PostNotFound()
    await cache.invalidate(_list_name(user_id), settings.posts_cache_ttl_seconds)
