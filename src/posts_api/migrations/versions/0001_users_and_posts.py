"""Users and posts.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT ids on PostgreSQL, so every id a path accepts (up to 2^63-1) binds as a parameter.
ID = sa.Integer().with_variant(sa.BigInteger(), "postgresql")
# Microsecond timestamps on MySQL/MariaDB (plain DATETIME drops them).
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# 16 MiB on MySQL/MariaDB, whose TEXT stops at 64 KiB; UTF-8 bytes on PostgreSQL, whose text
# cannot hold U+0000 (posts_api.posts.models.PostText converts).
POST_TEXT = (
    sa.Text()
    .with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
    .with_variant(postgresql.BYTEA(), "postgresql")
)
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "sqlite_autoincrement": True,  # never reuse the id of a deleted row
}


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", ID, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        **TABLE_OPTIONS,
    )
    op.create_table(
        "posts",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("text", POST_TEXT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_posts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
        **TABLE_OPTIONS,
    )
    op.create_index(op.f("ix_posts_user_id"), "posts", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_posts_user_id"), table_name="posts")
    op.drop_table("posts")
    op.drop_table("users")
