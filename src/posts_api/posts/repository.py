"""Database statements on ``posts``; ownership is always part of the ``WHERE``.

A post that is not the caller's is indistinguishable from one that does not exist: both match
no row. Every method is one statement, except ``update_owned`` on databases without
``UPDATE ... RETURNING`` (MySQL, MariaDB), which adds one SELECT. Lists are read in the
primary-key order through the ``(user_id)`` index, whose entries carry the id: keyset batches
(``id > after ... LIMIT``) need no OFFSET.

The statements are Core, built once here with named parameters, and run on the driver's own
connection (``core.driver``: compiled once per dialect, no session).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Delete,
    Update,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from posts_api.core.db import utcnow
from posts_api.core.driver import DriverConnection
from posts_api.posts.models import Post

COLUMNS = (Post.id.label("post_id"), Post.text, Post.created_at, Post.updated_at)


class StoredPost(NamedTuple):
    """A post as the database holds it (or as an UPDATE without RETURNING left it)."""

    post_id: int
    text: str
    created_at: dt.datetime
    updated_at: dt.datetime


class ListedPost(NamedTuple):
    """A post as a batch of a list reads it.

    ``text`` is ``None`` when it is too long to come inline (``batch_for_user``): the post must
    then be read on its own.
    """

    post_id: int
    text: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class UnknownOwner(Exception):
    """The owner named for a new post does not exist (the foreign key refused it)."""


OWNED = (Post.id == bindparam("post_id"), Post.user_id == bindparam("user_id"))
SELECT_OWNED = select(*COLUMNS).where(*OWNED)
SELECT_ID_OWNED = select(Post.id).where(*OWNED)
SELECT_CREATED_AT = select(Post.created_at).where(*OWNED)
# A post's length as the database counts it: characters on SQLite, bytes on MySQL and on
# PostgreSQL (its ``bytea``, whose length is read without fetching the value).
_LENGTH = func.length(Post.text)
SELECT_BATCH = (
    select(
        Post.id.label("post_id"),
        case((bindparam("inline") >= _LENGTH, Post.text)).label("text"),
        Post.created_at,
        Post.updated_at,
    )
    .where(
        Post.user_id == bindparam("user_id"),
        Post.id > bindparam("after"),
        Post.id <= bindparam("upto"),
    )
    .order_by(Post.id)
    .limit(bindparam("limit"))
)
SELECT_IDS_AFTER = (
    select(Post.id)
    .where(Post.user_id == bindparam("user_id"), Post.id > bindparam("after"))
    .order_by(Post.id)
    .limit(2)
    .offset(bindparam("skip"))
)
INSERT = insert(Post).values(
    user_id=bindparam("user_id"),
    text=bindparam("text"),
    created_at=bindparam("now"),
    updated_at=bindparam("now"),
)


class PostRepository:
    """Queries on ``posts`` through one driver connection."""

    def __init__(self, connection: DriverConnection) -> None:
        """Use ``connection`` for every statement."""
        self.connection = connection

    async def add(self, *, user_id: int, text: str) -> int:
        """INSERT a post and return its id. Raises ``UnknownOwner`` if the user is gone."""
        try:
            post_id = await self.connection.insert(INSERT, user_id=user_id, text=text, now=utcnow())
        except IntegrityError as exc:  # the only constraint an insert can break: the owner
            raise UnknownOwner(user_id) from exc
        assert isinstance(post_id, int)
        return post_id

    async def batch_for_user(
        self, *, user_id: int, after: int, upto: int, limit: int, inline: int
    ) -> list[ListedPost]:
        """SELECT at most ``limit`` of the user's posts with ids in (``after``, ``upto``].

        In id order. A text longer than ``inline`` (characters on SQLite, bytes elsewhere) is
        left out (``None``), so the answer's size is bounded by ``limit`` x ``inline``, whatever
        the posts.
        """
        rows = await self.connection.fetch(
            SELECT_BATCH, user_id=user_id, after=after, upto=upto, limit=limit, inline=inline
        )
        return [ListedPost(*row) for row in rows]

    async def ids_after(self, *, user_id: int, after: int, skip: int) -> list[int]:
        """SELECT at most two ids of the user's posts above ``after``, the first ``skip`` skipped.

        The last post of a page, then the first one after it: one range scan of the index.
        """
        rows = await self.connection.fetch(
            SELECT_IDS_AFTER, user_id=user_id, after=after, skip=skip
        )
        return [row[0] for row in rows]

    async def get_owned(self, *, user_id: int, post_id: int) -> StoredPost | None:
        """SELECT one post if it exists and is the user's."""
        row = await self.connection.fetch_one(SELECT_OWNED, user_id=user_id, post_id=post_id)
        return None if row is None else StoredPost(*row)

    async def exists_owned(self, *, user_id: int, post_id: int) -> bool:
        """SELECT whether the user has this post (tells a 412 from a 404 after a failed write)."""
        row = await self.connection.fetch_one(SELECT_ID_OWNED, user_id=user_id, post_id=post_id)
        return row is not None

    async def update_owned(
        self,
        *,
        user_id: int,
        post_id: int,
        text: str,
        updated_in: list[dt.datetime] | None = None,
    ) -> StoredPost | None:
        """UPDATE the text of the user's post; return it as this update left it, or ``None``.

        ``updated_in``: when given, the post is only changed if its ``updated_at`` is one of
        these (``If-Match``); ``None`` is then also the answer when it is not. Without
        ``UPDATE ... RETURNING`` (MySQL, MariaDB) only ``created_at`` is read back: the text and
        the time are this update's own, where re-reading them could return those of a
        concurrent update that landed in between.
        """
        now = utcnow()
        values = _values(user_id=user_id, post_id=post_id, updated_in=updated_in)
        tags = None if updated_in is None else len(updated_in)
        if self.connection.dialect.update_returning:
            statement = _update(tags=tags, returning=True)
            row = await self.connection.fetch_one(statement, text=text, now=now, **values)
            return None if row is None else StoredPost(*row)
        statement = _update(tags=tags, returning=False)
        if (await self.connection.execute(statement, text=text, now=now, **values)).rowcount == 0:
            return None
        created = await self.connection.fetch_one(
            SELECT_CREATED_AT, user_id=user_id, post_id=post_id
        )
        return None if created is None else StoredPost(post_id, text, created[0], now)

    async def delete_owned(
        self, *, user_id: int, post_id: int, updated_in: list[dt.datetime] | None = None
    ) -> bool:
        """DELETE the user's post; ``False`` if there was none to delete.

        ``updated_in`` as in ``update_owned``: ``False`` too when the post has changed since.
        """
        statement = _delete(tags=None if updated_in is None else len(updated_in))
        values = _values(user_id=user_id, post_id=post_id, updated_in=updated_in)
        return (await self.connection.execute(statement, **values)).rowcount > 0


@functools.lru_cache(maxsize=32)
def _update(*, tags: int | None, returning: bool) -> Update:
    """The UPDATE of a post's text, conditional on ``tags`` timestamps (``None``: on none)."""
    statement = (
        sql_update(Post)
        .where(*OWNED, *_unchanged(tags))
        .values(text=bindparam("text"), updated_at=bindparam("now"))
    )
    return statement.returning(*COLUMNS) if returning else statement


@functools.lru_cache(maxsize=32)
def _delete(*, tags: int | None) -> Delete:
    """The DELETE of a post, conditional on ``tags`` timestamps (``None``: on none)."""
    return delete(Post).where(*OWNED, *_unchanged(tags))


def _unchanged(tags: int | None) -> tuple[ColumnElement[bool], ...]:
    """The ``If-Match`` condition of a write: none, or ``updated_at IN`` that many values.

    Each value is its own parameter (``updated_0``, ...), so one statement per count of tags
    is compiled, not one per request; no tag naming this post matches nothing.
    """
    if tags is None:
        return ()
    if tags == 0:
        return (false(),)
    stamps = [bindparam(f"updated_{i}", type_=Post.updated_at.type) for i in range(tags)]
    return (Post.updated_at.in_(stamps),)


def _values(
    *, user_id: int, post_id: int, updated_in: list[dt.datetime] | None
) -> dict[str, object]:
    """The parameters of an owned, maybe conditional write (see ``_unchanged``)."""
    stamps = {f"updated_{i}": stamp for i, stamp in enumerate(updated_in or ())}
    return {"user_id": user_id, "post_id": post_id, **stamps}
