"""Database statements on ``users`` and ``sessions``: one statement per call.

Arguments are keyword-only: a user id and a session id passed in the wrong order would
otherwise type-check.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from posts_api.auth.models import User, UserSession
from posts_api.core.db import UTCDateTime, execute_dml, utcnow


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

    async def set_password(self, *, user_id: int, verified_hash: str, password_hash: str) -> bool:
        """UPDATE a user's password hash from ``verified_hash`` to ``password_hash``.

        False if the user is gone or their hash is no longer ``verified_hash`` (a racing change
        won: the password the caller confirmed is not the account's any more). The UPDATE takes
        the user's row lock, which racing log-ins wait for (``SessionRepository.start_if``).
        """
        stmt = (
            update(User)
            .where(User.id == user_id, User.password_hash == verified_hash)
            .values(password_hash=password_hash)
        )
        return (await execute_dml(self.session, stmt)).rowcount == 1

    async def lock_if(self, *, user_id: int, verified_hash: str) -> bool:
        """Lock the user's row for the rest of the transaction (``SELECT ... FOR UPDATE``).

        False if the user is gone or their hash is no longer ``verified_hash``. Taken first, it
        makes racing log-ins wait (``SessionRepository.start_if``) and then find the user gone,
        instead of starting a session the transaction would not see. (SQLite has no row locks:
        its ``BEGIN IMMEDIATE`` already holds the one write lock.)
        """
        stmt = (
            select(User.id)
            .where(User.id == user_id, User.password_hash == verified_hash)
            .with_for_update()
        )
        return (await self.session.execute(stmt)).one_or_none() is not None

    async def delete(self, *, user_id: int) -> None:
        """DELETE a user (their posts and sessions go by cascade)."""
        await execute_dml(self.session, delete(User).where(User.id == user_id))


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

    async def start_if(
        self, *, user_id: int, verified_hash: str, refresh_expires_at: dt.datetime
    ) -> str | None:
        """Start a session only if the user's password hash is still ``verified_hash``.

        One statement, ``INSERT INTO sessions ... SELECT ... FROM users WHERE id = :user AND
        password_hash = :verified FOR SHARE``: a log-in that verified a password which a
        racing change or deletion has since replaced or removed starts nothing (``None``).
        The shared lock makes it wait for a change or deletion in progress (each holds the
        user's row lock from its first statement) and then read the committed row, on
        PostgreSQL (READ COMMITTED re-reads a row it waited for) as on MySQL/MariaDB; SQLite
        runs one writer at a time.
        """
        session_id = secrets.token_hex(16)
        now = utcnow()
        source = (
            select(
                literal(session_id),
                User.id,
                literal(0),
                literal(refresh_expires_at, UTCDateTime()),
                literal(now, UTCDateTime()),
            )
            .where(User.id == user_id, User.password_hash == verified_hash)
            .with_for_update(read=True)
        )
        columns = ["id", "user_id", "refresh_counter", "refresh_expires_at", "created_at"]
        stmt = insert(UserSession).from_select(columns, source)
        if (await execute_dml(self.session, stmt)).rowcount != 1:
            return None
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

    async def was_spent(self, *, session_id: str, user_id: int, counter: int) -> bool:
        """Whether refresh token ``counter`` of a live session was already spent (reuse).

        One SELECT. A "no" is final (counters only go up; a revoked session stays revoked), so a
        refresh that fails for another reason (expired, revoked, unknown) can answer without
        touching anything; a "yes" is settled by ``revoke_if_spent``.
        """
        stmt = select(UserSession.id).where(
            UserSession.id == session_id,
            UserSession.user_id == user_id,
            UserSession.refresh_counter > counter,
            UserSession.revoked_at.is_(None),
        )
        return (await self.session.execute(stmt)).first() is not None

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
