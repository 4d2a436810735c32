"""Database statements on ``posts``; ownership is always part of the ``WHERE``.

A post that is not the caller's is indistinguishable from one that does not exist: both match
no row. Every method is one statement, except ``update_owned`` on databases without
``UPDATE ... RETURNING`` (MySQL, MariaDB), which adds one SELECT, and ``stream_for_user`` on
PostgreSQL, whose cursor needs ``BEGIN``/``COMMIT`` around its SELECT. Lists are read in the
primary-key order through the ``(user_id)`` index, whose entries carry the id: keyset pages
(``id > after ... LIMIT``) need no OFFSET.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Sequence
from typing import NamedTuple

from sqlalchemy import ColumnElement, Row, delete, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from posts_api.core.db import execute_dml, utcnow
from posts_api.posts.models import Post

COLUMNS = (Post.id.label("post_id"), Post.text, Post.created_at, Post.updated_at)
PostRow = Row[int, str, dt.datetime, dt.datetime]
"""A post as selected: ``post_id``, ``text``, ``created_at``, ``updated_at``."""


class UpdatedPost(NamedTuple):
    """A post as an UPDATE left it, where the database cannot return it (no RETURNING)."""

    post_id: int
    text: str
    created_at: dt.datetime
    updated_at: dt.datetime


class UnknownOwner(Exception):
    """The owner named for a new post does not exist (the foreign key refused it)."""


class PostRepository:
    """Queries on ``posts`` through one session."""

    def __init__(self, session: AsyncSession) -> None:
        """Use ``session`` for every statement."""
        self.session = session

    async def add(self, *, user_id: int, text: str) -> int:
        """INSERT a post and return its id. Raises ``UnknownOwner`` if the user is gone."""
        now = utcnow()
        stmt = insert(Post).values(user_id=user_id, text=text, created_at=now, updated_at=now)
        try:
            result = await execute_dml(self.session, stmt)
        except IntegrityError as exc:  # the only constraint an insert can break: the owner
            raise UnknownOwner(user_id) from exc
        post_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        assert isinstance(post_id, int)
        return post_id

    async def page_for_user(self, *, user_id: int, after: int, limit: int) -> list[PostRow]:
        """SELECT at most ``limit`` of the user's posts with ids above ``after``, in id order."""
        stmt = (
            select(*COLUMNS)
            .where(Post.user_id == user_id, Post.id > after)
            .order_by(Post.id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).all())

    async def stream_for_user(
        self, *, user_id: int, after: int, batch: int
    ) -> AsyncGenerator[Sequence[PostRow], None]:
        """The user's posts with ids above ``after``, in id order, ``batch`` rows at a time.

        One SELECT through a server-side cursor: rows are fetched as they are consumed, so
        memory holds one batch, not the list (asyncmy: an unbuffered cursor; aiosqlite: batched
        fetches; asyncpg: a portal read 50 rows per Execute, SQLAlchemy's adapter's fixed size).
        A PostgreSQL portal lives only as long as its transaction, and an autocommit statement's
        implicit one ends at its first Sync: on that database the SELECT is wrapped in
        ``BEGIN``/``COMMIT``, the only way asyncpg keeps a cursor. Stopping early leaves the
        cursor (and there the transaction) open: the caller must then invalidate the session's
        connection (see ``PostService``), cheaper than reading the rest of the rows to close it.
        """
        stmt = (
            select(*COLUMNS)
            .where(Post.user_id == user_id, Post.id > after)
            .order_by(Post.id)
            .execution_options(yield_per=batch)
        )
        in_transaction = self.session.get_bind().dialect.name == "postgresql"
        if in_transaction:
            await self.session.execute(sql_text("BEGIN"))
        result = await self.session.stream(stmt)
        async for rows in result.partitions():
            yield rows
        if in_transaction:  # read only: COMMIT merely ends it
            await self.session.execute(sql_text("COMMIT"))

    async def get_owned(self, *, post_id: int, user_id: int) -> PostRow | None:
        """SELECT one post if it exists and is the user's."""
        stmt = select(*COLUMNS).where(Post.id == post_id, Post.user_id == user_id)
        return (await self.session.execute(stmt)).one_or_none()

    async def exists_owned(self, *, post_id: int, user_id: int) -> bool:
        """SELECT whether the user has this post (tells a 412 from a 404 after a failed write)."""
        stmt = select(Post.id).where(Post.id == post_id, Post.user_id == user_id)
        return (await self.session.scalar(stmt)) is not None

    async def update_owned(
        self,
        *,
        post_id: int,
        user_id: int,
        text: str,
        updated_in: list[dt.datetime] | None = None,
    ) -> PostRow | UpdatedPost | None:
        """UPDATE the text of the user's post; return it as this update left it, or ``None``.

        ``updated_in``: when given, the post is only changed if its ``updated_at`` is one of
        these (``If-Match``); ``None`` is then also the answer when it is not. Without
        ``UPDATE ... RETURNING`` (MySQL, MariaDB) only ``created_at`` is read back: the text and
        the time are this update's own, where re-reading them could return those of a
        concurrent update that landed in between.
        """
        owned = (Post.id == post_id, Post.user_id == user_id)
        now = utcnow()
        stmt = update(Post).where(*owned, *_unchanged(updated_in)).values(text=text, updated_at=now)
        if self.session.get_bind().dialect.update_returning:
            return (await self.session.execute(stmt.returning(*COLUMNS))).one_or_none()
        if (await execute_dml(self.session, stmt)).rowcount == 0:
            return None
        created_at = await self.session.scalar(select(Post.created_at).where(*owned))
        return None if created_at is None else UpdatedPost(post_id, text, created_at, now)

    async def delete_owned(
        self, *, post_id: int, user_id: int, updated_in: list[dt.datetime] | None = None
    ) -> bool:
        """DELETE the user's post; ``False`` if there was none to delete.

        ``updated_in`` as in ``update_owned``: ``False`` too when the post has changed since.
        """
        stmt = delete(Post).where(
            Post.id == post_id, Post.user_id == user_id, *_unchanged(updated_in)
        )
        return (await execute_dml(self.session, stmt)).rowcount > 0


def _unchanged(updated_in: list[dt.datetime] | None) -> tuple[ColumnElement[bool], ...]:
    """The ``If-Match`` condition of a write: no condition, or ``updated_at IN (...)``."""
    return () if updated_in is None else (Post.updated_at.in_(updated_in),)
