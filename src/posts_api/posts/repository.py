"""Database statements on ``posts``; ownership is always part of the ``WHERE``.

A post that is not the caller's is indistinguishable from one that does not exist: both match
no row. Every method is one statement, except ``update_owned`` on databases without
``UPDATE ... RETURNING`` (MySQL, MariaDB), which adds one SELECT.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import Row, delete, insert, select, update
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

    async def add(self, user_id: int, text: str) -> int:
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

    async def list_for_user(self, user_id: int) -> list[PostRow]:
        """SELECT the user's posts, oldest first."""
        stmt = select(*COLUMNS).where(Post.user_id == user_id).order_by(Post.id)
        return list((await self.session.execute(stmt)).all())

    async def get_owned(self, post_id: int, user_id: int) -> PostRow | None:
        """SELECT one post if it exists and is the user's."""
        stmt = select(*COLUMNS).where(Post.id == post_id, Post.user_id == user_id)
        return (await self.session.execute(stmt)).one_or_none()

    async def update_owned(
        self, post_id: int, user_id: int, text: str
    ) -> PostRow | UpdatedPost | None:
        """UPDATE the text of the user's post; return it as this update left it, or ``None``.

        Without ``UPDATE ... RETURNING`` (MySQL, MariaDB) only ``created_at`` is read back: the
        text and the time are this update's own, where re-reading them could return those of
        a concurrent update that landed in between.
        """
        owned = (Post.id == post_id, Post.user_id == user_id)
        now = utcnow()
        stmt = update(Post).where(*owned).values(text=text, updated_at=now)
        if self.session.get_bind().dialect.update_returning:
            return (await self.session.execute(stmt.returning(*COLUMNS))).one_or_none()
        if (await execute_dml(self.session, stmt)).rowcount == 0:
            return None
        created_at = await self.session.scalar(select(Post.created_at).where(*owned))
        return None if created_at is None else UpdatedPost(post_id, text, created_at, now)

    async def delete_owned(self, post_id: int, user_id: int) -> bool:
        """DELETE the user's post; ``False`` if there was none to delete."""
        stmt = delete(Post).where(Post.id == post_id, Post.user_id == user_id)
        return (await execute_dml(self.session, stmt)).rowcount > 0
