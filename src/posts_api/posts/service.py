"""Post rules: ownership, pages, conditional writes, the per-user list cache and its invalidation.

The list of a user's posts is cached as the exact JSON bytes of the response with its tag and
item offsets (``posts.listing``), so a hit, a page cut from it or a 304 costs one cache round
trip and no database call, no serialization. A list or page too large to cache is streamed from
the database instead. Every write by the user marks the list's version before the database is
written and replaces it after (``Cache.changing``): meanwhile no host stores or serves the list,
and afterwards their very next GET /posts is a miss that sees the write, in any worker on any
host sharing the cache. When the mark cannot be set (the cache is unreachable), the write is
refused with ``CacheUnavailable`` (a 503) before anything is written, so a retry cannot
duplicate a post.

Lists and pages are read in keyset batches (``id > last ... LIMIT``), each SELECT on a
connection taken for it alone and given back before its rows are sent: a stream whose client
stops reading holds no connection, whatever the list's size, and a batch's size is bounded
whatever the posts' (long texts are read one post at a time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from posts_api.core.cache import Cache
from posts_api.core.cache.versioned import Change
from posts_api.core.driver import DriverPool
from posts_api.core.errors import NotFound, PreconditionFailed, UserGone
from posts_api.ops import metrics
from posts_api.posts.conditions import TagList, updated_at_named
from posts_api.posts.listing import CachedList, ListQuery, Page, serialize
from posts_api.posts.repository import PostRepository, StoredPost, UnknownOwner
from posts_api.posts.schemas import PostIn, PostOut

# Rows per SELECT of a list or page. With INLINE_TEXT_BYTES, a batch's texts are at most 2 MiB
# (8 MiB of UTF-8 on SQLite, which counts characters): a list or page of up to 255 short posts
# is one SELECT, and a stalled stream keeps at most one batch in memory.
BATCH_ROWS = 256
# Texts up to this long come inside their batch; a longer one is read alone, when it is sent
# (one SELECT per post of 8 KiB or more: its statement costs little beside its bytes).
INLINE_TEXT_BYTES = 8192
# A streamed list is sent in pieces of about this size: few sends for small posts.
CHUNK_BYTES = 256 * 1024
# The highest id there can be: "no upper bound" for a batch.
MAX_ID = 2**63 - 1

CachedRead = tuple[bytes | None, bytes | None]
"""What ``Cache.get_fresh`` answers for a list: ``(entry or None, version tag)``."""


@dataclass(frozen=True)
class Stream:
    """A list or page too large to cache, sent as it is read: no tag, nothing cached.

    ``chunks`` holds no database connection while it waits to be read (each batch takes one
    and gives it back); closing it (``aclose()``) drops the batch it holds, started or not.
    ``next_after`` is the page's last id when posts remain after it (the ``Link`` header).
    """

    chunks: AsyncIterator[bytes]
    next_after: int | None = None


class PostNotFound(NotFound):
    """No such post for this user (it may exist for someone else: that looks the same)."""

    detail = "Post not found"


class PostChanged(PreconditionFailed):
    """``If-Match`` names a version of the post that is no longer current."""

    detail = "The post has changed since the version named by If-Match"


class PostService:
    """The posts use cases, for one process: built once by ``create_app``, injected per request.

    Each method takes a connection only when it needs the database, so a cache hit never
    touches the connection pool; the connection is released before the method returns (a
    streamed list takes one per batch). Statements run on the driver's connection
    (``core.driver``).
    """

    def __init__(
        self,
        lists: DriverPool,
        database: DriverPool,
        cache: Cache,
        *,
        list_ttl: int,
        max_entry_bytes: int,
        page_max: int,
    ) -> None:
        """Use ``database`` (``lists`` for lists and pages), ``cache`` for lists (``list_ttl`` s).

        Lists and pages whose JSON exceeds ``max_entry_bytes`` are streamed, never cached; a
        page holds at most ``page_max`` posts.
        """
        self.lists = lists
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

        From the cached list when there is one (no database call), else read in batches
        (``_read``): cached if it is the whole list and fits in ``max_entry_bytes``, streamed
        (``Stream``) if it does not fit. ``cached`` is the cache read of this user's list when
        the caller already made it (same answer as ``get_fresh``). A miss stores its result
        under the version read before querying, so a write that lands in between makes this
        result stale at once instead of hiding the write.
        """
        name = list_name(user_id)
        entry, version = cached if cached is not None else await self.cache.get_fresh(name)
        listed = CachedList.unpack(entry) if entry is not None else None
        (metrics.counters.cache_miss if listed is None else metrics.counters.cache_hit).inc()
        if listed is not None:
            page = listed.page(user_id=user_id, query=query)
        else:
            read = await self._read(user_id=user_id, query=query)
            if isinstance(read, Stream):
                return read
            listed, following = read
            if query.limit is None and query.after == 0:  # the whole list
                await self.cache.put_fresh(name, version, listed.pack(), self.list_ttl)
            page = Page(listed.body, listed.etag, following)
        if if_none_match is not None and if_none_match.matches_weakly(page.etag):
            return Page(None, page.etag, page.next_after)
        return page

    async def _read(
        self, *, user_id: int, query: ListQuery
    ) -> tuple[CachedList, int | None] | Stream:
        """The posts ``query`` asks for, and the page's last id if posts follow; or a stream.

        A page reads ``limit`` + 1 posts: the extra one says whether a next page exists. Until
        the JSON passes ``max_entry_bytes`` the items are kept; past it, they are handed to a
        ``Stream`` that sends them, then reads the rest. A page's ``Link`` goes out before its
        body, so its last id is looked up first (``_page_end``), and the stream stops there.
        """
        limit = query.limit
        rows = self._posts(
            user_id=user_id, after=query.after, count=None if limit is None else limit + 1
        )
        ids: list[int] = []
        items: list[bytes] = []
        size = 2
        async for row in rows:
            if len(ids) == limit:  # the extra post: a next page exists
                await rows.aclose()
                return CachedList.build(user_id=user_id, ids=ids, items=items), ids[-1]
            items.append(serialize(row))
            ids.append(row.post_id)
            size += len(items[-1]) + 1
            if size > self.max_entry_bytes:
                if limit is None:
                    return Stream(_stream(items, rows))
                remaining = limit - len(ids)
                upto, following = await self._page_end(
                    user_id=user_id, after=ids[-1], remaining=remaining
                )
                return Stream(_stream(items, _until(rows, upto=upto, count=remaining)), following)
        return CachedList.build(user_id=user_id, ids=ids, items=items), None

    async def _page_end(
        self, *, user_id: int, after: int, remaining: int
    ) -> tuple[int, int | None]:
        """Where a page ends that has ``remaining`` posts to go after ``after``.

        Its last id (``MAX_ID`` if fewer remain), and that id again if more posts follow it
        (else None): one SELECT of at most two ids.
        """
        async with self.lists.connect() as connection:
            repo = PostRepository(connection)
            if remaining == 0:  # the page is whole: does any post follow it?
                found = [after, *await repo.ids_after(user_id=user_id, after=after, skip=0)]
            else:
                found = await repo.ids_after(user_id=user_id, after=after, skip=remaining - 1)
        if not found:
            return MAX_ID, None
        return found[0], (found[0] if len(found) > 1 else None)

    async def _posts(
        self, *, user_id: int, after: int, upto: int = MAX_ID, count: int | None
    ) -> AsyncGenerator[StoredPost, None]:
        """The user's posts with ids in (``after``, ``upto``], at most ``count`` (None: all).

        One SELECT per ``BATCH_ROWS`` posts, and one per long text, each on a connection taken
        for it and given back before the posts are yielded: however slowly the caller takes
        them, it holds no connection. The batches are not one snapshot: a write that lands
        between two of them shows in the later one (a post is yielded once, in id order).
        """
        while count is None or count > 0:
            want = BATCH_ROWS if count is None else min(count, BATCH_ROWS)
            async with self.lists.connect() as connection:
                batch = await PostRepository(connection).batch_for_user(
                    user_id=user_id, after=after, upto=upto, limit=want, inline=INLINE_TEXT_BYTES
                )
            for listed in batch:
                if listed.text is not None:
                    post: StoredPost | None = StoredPost(listed.post_id, listed.text, *listed[2:])
                else:
                    async with self.lists.connect() as connection:  # a long text: read alone
                        post = await PostRepository(connection).get_owned(
                            user_id=user_id, post_id=listed.post_id
                        )
                if post is not None:  # else deleted since the batch was read: not counted
                    yield post
                    if count is not None:
                        count -= 1
            if len(batch) < want:
                return
            after = batch[-1].post_id

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


async def _until(
    rows: AsyncGenerator[StoredPost, None], *, upto: int, count: int
) -> AsyncGenerator[StoredPost, None]:
    """The first ``count`` of ``rows`` whose ids are at most ``upto`` (the rest of a page)."""
    try:
        async for row in rows:
            if count == 0 or row.post_id > upto:
                return
            count -= 1
            yield row
    finally:
        await rows.aclose()


async def _stream(
    kept: list[bytes], rest: AsyncGenerator[StoredPost, None]
) -> AsyncIterator[bytes]:
    """The JSON array: the items already read (at least one), then each post of ``rest``.

    A database failure mid-way raises here, after the status line went out: the server then
    cuts the connection and the client sees a truncated body. Nothing is held but memory: a
    stream closed early, or before it started, has no connection to give back.
    """
    try:
        yield b"[" + b",".join(kept)
        kept.clear()
        chunk = bytearray()
        async for row in rest:
            chunk += b","
            chunk += serialize(row)
            if len(chunk) >= CHUNK_BYTES:
                yield bytes(chunk)
                chunk.clear()
        yield bytes(chunk + b"]")
    finally:
        await rest.aclose()
