"""Post rules: ownership, pages, conditional writes, the per-user list cache and its invalidation.

The list of a user's posts is cached as the exact JSON bytes of the response with its tag and
item offsets (``posts.listing``), so a hit, a page cut from it or a 304 costs one cache round
trip and no database call, no serialization. A list too large to cache is streamed from the
database instead. Every write by the user marks the list's version before the database is
written and replaces it after (``Cache.changing``): meanwhile no host stores or serves the list,
and afterwards their very next GET /posts is a miss that sees the write, in any worker on any
host sharing the cache. When the mark cannot be set (the cache is unreachable), the write is
refused with ``CacheUnavailable`` (a 503) before anything is written, so a retry cannot
duplicate a post.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.core.cache import Cache
from posts_api.core.cache.versioned import Change
from posts_api.core.driver import DriverPool
from posts_api.core.errors import NotFound, PreconditionFailed, UserGone
from posts_api.ops import metrics
from posts_api.posts.conditions import TagList, updated_at_named
from posts_api.posts.listing import CachedList, ListQuery, Page, serialize
from posts_api.posts.repository import (
    PostRepository,
    PostRow,
    StoredPost,
    UnknownOwner,
    stream_for_user,
)
from posts_api.posts.schemas import PostIn, PostOut

# Rows fetched per round of a streamed list: posts may be 1 MiB each, so a batch stays small.
STREAM_BATCH = 8
# A streamed list is sent in pieces of about this size: few sends for small posts.
CHUNK_BYTES = 256 * 1024

CachedRead = tuple[bytes | None, bytes | None]
"""What ``Cache.get_fresh`` answers for a list: ``(entry or None, version tag)``."""


@dataclass(frozen=True)
class Stream:
    """A list too large to cache, sent as it is read: no tag, nothing cached.

    ``chunks`` owns a database session until it is exhausted or closed: whoever sends it must
    ``aclose()`` it when done, whether the client read it all or went away.
    """

    chunks: AsyncIterator[bytes]


class PostNotFound(NotFound):
    """No such post for this user (it may exist for someone else: that looks the same)."""

    detail = "Post not found"


class PostChanged(PreconditionFailed):
    """``If-Match`` names a version of the post that is no longer current."""

    detail = "The post has changed since the version named by If-Match"


class PostService:
    """The posts use cases, for one process: built once by ``create_app``, injected per request.

    Each method takes a connection only when it needs the database, so a cache hit never
    touches the connection pool; the connection is released before the method returns. One-row
    statements run on the driver's connection (``core.driver``); a streamed list, whose cursor
    outlives the method, through a session.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        database: DriverPool,
        cache: Cache,
        *,
        list_ttl: int,
        max_entry_bytes: int,
        page_max: int,
    ) -> None:
        """Use ``database`` (``sessions`` for streamed lists), ``cache`` for lists (``list_ttl`` s).

        Lists whose JSON exceeds ``max_entry_bytes`` are streamed, never cached; a page holds
        at most ``page_max`` posts.
        """
        self.sessions = sessions
        self.database = database
        self.cache = cache
        self.list_ttl = list_ttl
        self.max_entry_bytes = max_entry_bytes
        self.page_max = page_max

    async def list_posts(
        self,
        *,
        user_id: int,
        query: ListQuery,
        if_none_match: TagList | None = None,
        cached: CachedRead | None = None,
    ) -> Page | Stream:
        """The user's posts that ``query`` asks for, in id order.

        From the cached list when there is one (no database call), else one SELECT: a page
        with ``LIMIT`` (not cached), or the list through a cursor, cached if it fits in
        ``max_entry_bytes`` and streamed (``Stream``) if not. ``cached`` is the cache read of
        this user's list when the caller already made it (same answer as ``get_fresh``). A miss
        stores its result under the version read before querying, so a write that lands in
        between makes this result stale at once instead of hiding the write.
        """
        name = list_name(user_id)
        entry, version = cached if cached is not None else await self.cache.get_fresh(name)
        listed = CachedList.unpack(entry) if entry is not None else None
        (metrics.counters.cache_miss if listed is None else metrics.counters.cache_hit).inc()
        if listed is not None:
            page = listed.page(user_id=user_id, query=query)
        elif query.limit is not None:
            page = await self._read_page(user_id=user_id, after=query.after, limit=query.limit)
        else:
            read = await self._read_list(user_id=user_id, after=query.after)
            if isinstance(read, Stream):
                return read
            if query.after == 0:
                await self.cache.put_fresh(name, version, read.pack(), self.list_ttl)
            page = read.page(user_id=user_id, query=query)
        if if_none_match is not None and if_none_match.matches_weakly(page.etag):
            return Page(None, page.etag, page.next_after)
        return page

    async def _read_page(self, *, user_id: int, after: int, limit: int) -> Page:
        """One SELECT of ``limit`` + 1 rows: the extra one says whether a next page exists."""
        async with self.database.connect() as connection:
            rows = await PostRepository(connection).page_for_user(
                user_id=user_id, after=after, limit=limit + 1
            )
        following = rows[limit - 1].post_id if len(rows) > limit else None
        ids = [row.post_id for row in rows[:limit]]
        listed = CachedList.build(
            user_id=user_id, ids=ids, items=[serialize(r) for r in rows[:limit]]
        )
        return Page(listed.body, listed.etag, following)

    async def _read_list(self, *, user_id: int, after: int) -> CachedList | Stream:
        """Read the posts above ``after`` through a cursor; a ``Stream`` once they pass the cap.

        Until the JSON passes ``max_entry_bytes`` the items are kept; past it, the session and
        the cursor are handed to the stream, which sends what was kept and then the rest.
        """
        session = self.sessions()
        batches = stream_for_user(session, user_id=user_id, after=after, batch=STREAM_BATCH)
        ids: list[int] = []
        items: list[bytes] = []
        size = 2
        finished = handed_over = False
        try:
            async for rows in batches:
                for row in rows:
                    items.append(serialize(row))
                    ids.append(row.post_id)
                    size += len(items[-1]) + 1
                if size > self.max_entry_bytes:
                    handed_over = True  # the stream owns the session and the cursor now
                    return Stream(_stream(session, batches, items))
            finished = True
        finally:
            if not handed_over:
                await _release(session, batches, finished=finished)
        return CachedList.build(user_id=user_id, ids=ids, items=items)

    async def get_post(self, *, user_id: int, post_id: int) -> PostOut:
        """Return one of the user's posts (one SELECT). Raises ``PostNotFound``."""
        async with self.database.connect() as connection:
            row = await PostRepository(connection).get_owned(user_id=user_id, post_id=post_id)
        if row is None:
            raise PostNotFound()
        return _out(row)

    async def create_post(self, *, user_id: int, post: PostIn) -> int:
        """Store a new post and return its id (one INSERT). Raises ``UserGone``.

        Either way the user's cached list is replaced: a user removed from the database (their
        posts went with them) must not keep seeing a list cached while they existed.
        """
        try:
            async with self._changing(user_id), self.database.connect() as connection:
                return await PostRepository(connection).add(user_id=user_id, text=post.text)
        except UnknownOwner:
            raise UserGone() from None

    async def update_post(
        self, *, user_id: int, post_id: int, post: PostIn, if_match: TagList | None = None
    ) -> PostOut:
        """Replace a post's text and return the post (UPDATE, plus a SELECT without RETURNING).

        ``if_match`` goes in the UPDATE's ``WHERE``; only when it matches no row, one SELECT
        tells which error it is. Raises ``PostNotFound``, ``PostChanged``.
        """
        updated_in = _condition(post_id=post_id, if_match=if_match)
        async with self._changing(user_id), self.database.connect() as connection:
            repo = PostRepository(connection)
            row = await repo.update_owned(
                user_id=user_id, post_id=post_id, text=post.text, updated_in=updated_in
            )
            if row is None:
                await _refuse(repo, user_id=user_id, post_id=post_id, conditional=updated_in)
        assert row is not None
        return _out(row)

    async def delete_post(
        self, *, user_id: int, post_id: int, if_match: TagList | None = None
    ) -> None:
        """Delete a post (one DELETE; its row count tells a 404).

        ``if_match`` as in ``update_post``. Raises ``PostNotFound``, ``PostChanged``.
        """
        updated_in = _condition(post_id=post_id, if_match=if_match)
        async with self._changing(user_id), self.database.connect() as connection:
            repo = PostRepository(connection)
            deleted = await repo.delete_owned(
                user_id=user_id, post_id=post_id, updated_in=updated_in
            )
            if not deleted:
                await _refuse(repo, user_id=user_id, post_id=post_id, conditional=updated_in)

    async def forget_user(self, user_id: int) -> None:
        """Drop what is cached for a user whose account was deleted (their list), best effort."""
        await self.cache.invalidate(list_name(user_id))

    def _changing(self, user_id: int) -> AbstractAsyncContextManager[Change]:
        """Wrap a write of the user's posts: the list is marked before, replaced after.

        A write that matched no row (a 404, a 412) changed nothing: the list is then kept.

        Raises ``CacheUnavailable`` before the block (nothing written) when the cache cannot
        be told, so the change could not show on every host.
        """
        return self.cache.changing(list_name(user_id), unchanged_by=(PostNotFound, PostChanged))


LIST_FORMAT = "posts2"
"""Part of every list's cache name, changed with the format of the entry (1.0's was plain
JSON): workers of two releases sharing one Redis during a rolling upgrade never read each
other's entries."""


def list_name(user_id: int) -> str:
    """The cache entry name of a user's list of posts."""
    return f"{LIST_FORMAT}:{user_id}"


def _condition(*, post_id: int, if_match: TagList | None) -> list[dt.datetime] | None:
    """The ``updated_at`` values a conditional write may find (``None``: unconditional).

    ``*`` matches any existing post: no condition beyond ownership.
    """
    if if_match is None or if_match.any:
        return None
    return updated_at_named(post_id=post_id, tags=if_match.strong_tags())


def _out(row: StoredPost) -> PostOut:
    """The post as the API returns it, built without validation: the database's own values."""
    return PostOut.model_construct(
        post_id=row.post_id, text=row.text, created_at=row.created_at, updated_at=row.updated_at
    )


async def _refuse(
    repo: PostRepository, *, user_id: int, post_id: int, conditional: list[dt.datetime] | None
) -> None:
    """Raise the error of a write that matched no row: 404, or 412 if only the tag was wrong."""
    if conditional is not None and await repo.exists_owned(user_id=user_id, post_id=post_id):
        raise PostChanged()
    raise PostNotFound()


async def _stream(
    session: AsyncSession, batches: AsyncGenerator[Sequence[PostRow], None], kept: list[bytes]
) -> AsyncIterator[bytes]:
    """The JSON array: the items already read, then each batch as the cursor yields it.

    A database failure mid-way raises here, after the status line went out: the server then
    cuts the connection and the client sees a truncated body. The session is released however
    the stream ends.
    """
    finished = False
    try:
        yield b"[" + b",".join(kept)
        kept.clear()
        chunk = bytearray()
        async for rows in batches:
            for row in rows:  # one post at a time: a batch of 1 MiB posts is never doubled
                chunk += b","
                chunk += serialize(row)
                if len(chunk) >= CHUNK_BYTES:
                    yield bytes(chunk)
                    chunk.clear()
        finished = True
        yield bytes(chunk + b"]")
    finally:
        await _release(session, batches, finished=finished)


async def _release(
    session: AsyncSession, batches: AsyncGenerator[Sequence[PostRow], None], *, finished: bool
) -> None:
    """Give the connection back, or drop it if its cursor may still hold rows.

    Dropping is cheaper than reading the rest of the rows to close the cursor. Shielded: a
    client that went away cancels the request, not this clean-up.
    """
    with anyio.CancelScope(shield=True):
        await batches.aclose()
        if finished:
            await session.close()
        else:
            await session.invalidate()
