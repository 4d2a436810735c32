"""Database statements on ``users`` and ``sessions``: one statement per call.

Arguments are keyword-only: a user id and a session id passed in the wrong order would
otherwise type-check.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from posts_api.auth.models import User, UserSession
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

    async def get_account(self, *, user_id: int) -> tuple[str, dt.datetime] | None:
        """SELECT the email and creation time of a user."""
        stmt = select(User.email, User.created_at).where(User.id == user_id)
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else (row.email, row.created_at)

    async def get_email_and_hash(self, *, user_id: int) -> tuple[str, str] | None:
        """SELECT the email and password hash of a user."""
        stmt = select(User.email, User.password_hash).where(User.id == user_id)
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else (row.email, row.password_hash)

    async def set_password(self, *, user_id: int, password_hash: str) -> bool:
        """UPDATE a user's password hash; False if the user is gone."""
        stmt = update(User).where(User.id == user_id).values(password_hash=password_hash)
        return (await execute_dml(self.session, stmt)).rowcount == 1

    async def delete(self, *, user_id: int) -> bool:
        """DELETE a user (their posts and sessions go by cascade); False if already gone."""
        stmt = delete(User).where(User.id == user_id)
        return (await execute_dml(self.session, stmt)).rowcount == 1


class SessionRepository:
    """Queries on ``sessions`` through one session (a database one)."""

    def __init__(self, session: AsyncSession) -> None:
        """Use ``session`` for every statement."""
        self.session = session

    async def start(self, *, user_id: int, refresh_expires_at: dt.datetime) -> str:
        """INSERT a live session at refresh counter 0 and return its new random id."""
        session_id = secrets.token_hex(16)
        stmt = insert(UserSession).values(
            id=session_id,
            user_id=user_id,
            refresh_counter=0,
            refresh_expires_at=refresh_expires_at,
            created_at=utcnow(),
        )
        await execute_dml(self.session, stmt)
        return session_id

    async def spend_refresh(
        self,
        *,
        session_id: str,
        user_id: int,
        counter: int,
        now: dt.datetime,
        refresh_expires_at: dt.datetime,
    ) -> bool:
        """Spend refresh token ``counter``: UPDATE it to ``counter + 1`` if it is the live one.

        Checks and spends in one conditional statement, so of two racing refreshes exactly one
        changes the row: True for that one.
        """
        stmt = (
            update(UserSession)
            .where(
                UserSession.id == session_id,
                UserSession.user_id == user_id,
                UserSession.refresh_counter == counter,
                UserSession.revoked_at.is_(None),
                UserSession.refresh_expires_at > now,
            )
            .values(refresh_counter=counter + 1, refresh_expires_at=refresh_expires_at)
        )
        return (await execute_dml(self.session, stmt)).rowcount == 1

    async def revoke_if_spent(
        self, *, session_id: str, user_id: int, counter: int, now: dt.datetime
    ) -> bool:
        """End the session if refresh token ``counter`` was already spent (reuse): True if so."""
        stmt = (
            update(UserSession)
            .where(
                UserSession.id == session_id,
                UserSession.user_id == user_id,
                UserSession.refresh_counter > counter,
                UserSession.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return (await execute_dml(self.session, stmt)).rowcount == 1

    async def revoke(self, *, session_id: str, user_id: int, now: dt.datetime) -> bool:
        """End one live session of the user; True if it was live."""
        stmt = (
            update(UserSession)
            .where(
                UserSession.id == session_id,
                UserSession.user_id == user_id,
                UserSession.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return (await execute_dml(self.session, stmt)).rowcount == 1

    async def revoke_all(self, *, user_id: int, now: dt.datetime) -> int:
        """End every live session of the user, stamping them ``now``; return how many."""
        stmt = (
            update(UserSession)
            .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return (await execute_dml(self.session, stmt)).rowcount

    async def live_owner(self, *, session_id: str) -> int | None:
        """SELECT the user of a live session (None if ended, expired by deletion, or unknown)."""
        stmt = select(UserSession.user_id).where(
            UserSession.id == session_id, UserSession.revoked_at.is_(None)
        )
        owner: int | None = await self.session.scalar(stmt)
        return owner
