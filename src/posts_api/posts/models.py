"""The ``posts`` table."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.dialects.mysql import MEDIUMTEXT
from sqlalchemy.dialects.postgresql import BYTEA
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from posts_api.core.db import Base, Id, UTCDateTime


class PostText(TypeDecorator[str]):
    """A post's text: any Unicode string up to 1 MiB and more, U+0000 included, on every database.

    SQLite keeps it as ``TEXT``. MySQL's ``TEXT`` stops at 64 KiB, so it is ``MEDIUMTEXT``
    (16 MiB) there. PostgreSQL's ``text`` cannot hold U+0000 at all, so there the column is
    ``bytea`` holding the UTF-8 bytes, encoded on the way in and decoded on the way out: the
    application always sees ``str``, exactly as sent.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        """``MEDIUMTEXT`` on MySQL/MariaDB, ``bytea`` on PostgreSQL, ``TEXT`` elsewhere."""
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(MEDIUMTEXT())
        if dialect.name == "postgresql":
            return dialect.type_descriptor(BYTEA())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | bytes | None:
        """UTF-8 bytes for PostgreSQL's ``bytea``; the string itself elsewhere."""
        if value is not None and dialect.name == "postgresql":
            return value.encode()
        return value

    def process_result_value(self, value: str | bytes | None, dialect: Dialect) -> str | None:
        """The stored string (decoded from ``bytea`` on PostgreSQL)."""
        if isinstance(value, bytes):
            return value.decode()
        return value


class Post(Base):
    """A user's post. Deleting the user deletes their posts (``ON DELETE CASCADE``)."""

    __tablename__ = "posts"
    # A user's posts in id order, read from the index alone (lists and pages are keyset reads).
    __table_args__ = (
        Index("ix_posts_user_id_id", "user_id", "id"),
        {"sqlite_autoincrement": True},  # ids are never reused
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # A string target: posts need nothing from the auth package.
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(PostText())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
