"""Database statements on ``users``: one statement per call."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from posts_api.auth.models import User
from posts_api.core.db import execute_dml, utcnow


class UserRepository:
    """Queries on ``users`` through one session."""

    def __init__(self, session: AsyncSession) -> None:
        """Use ``session`` for every statement."""
        self.session = session

    async def add(self, email: str, password_hash: str) -> int | None:
        """INSERT a user and return its id, or ``None`` if the email is taken.

        The unique index decides, so two concurrent sign-ups cannot both win.
        """
        stmt = insert(User).values(email=email, password_hash=password_hash, created_at=utcnow())
        try:
            result = await execute_dml(self.session, stmt)
        except IntegrityError:
            return None
        user_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        assert isinstance(user_id, int)
        return user_id

    async def get_credentials(self, email: str) -> tuple[int, str] | None:
        """SELECT the id and password hash for ``email`` (already lower-cased)."""
        stmt = select(User.id, User.password_hash).where(User.email == email)
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else (row.id, row.password_hash)
