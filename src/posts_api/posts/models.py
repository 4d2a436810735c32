"""The ``posts`` table."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Text
from sqlalchemy.dialects.mysql import MEDIUMTEXT
from sqlalchemy.orm import Mapped, mapped_column

from posts_api.core.db import Base, UTCDateTime

# MySQL's TEXT stops at 64 KiB; MEDIUMTEXT holds 16 MiB, so a full 1 MiB post fits.
PostText = Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")


class Post(Base):
    """A user's post. Deleting the user deletes their posts (``ON DELETE CASCADE``)."""

    __tablename__ = "posts"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    # A string target: posts need nothing from the auth package.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(PostText)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
