"""The ``users`` and ``sessions`` tables."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from posts_api.core.db import Base, Id, UTCDateTime


class User(Base):
    """An account. ``email`` is stored lower-cased, so the unique index is case-insensitive."""

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - ids are never reused

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class UserSession(Base):
    """A login session: what an access token's ``sid`` names and a refresh token rotates.

    ``id`` is random (the public ``sid``). ``refresh_counter`` is the rotation number of the one
    refresh token that may still be spent; the token itself is never stored (it is an HMAC of
    these fields). ``revoked_at`` set means the session has ended.
    """

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    refresh_counter: Mapped[int] = mapped_column(Integer())
    refresh_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
