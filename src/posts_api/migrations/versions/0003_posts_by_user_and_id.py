"""Posts indexed by ``(user_id, id)``: a user's posts in id order, straight from the index.

Lists and pages are read in keyset batches (``user_id = ? AND id > ? ORDER BY id LIMIT n``).
SQLite's and InnoDB's index on ``user_id`` already kept each user's entries in id order (they
carry the row's key); PostgreSQL's did not, so each batch sorted all of the user's remaining
posts, and a long list cost the square of its length. The new index replaces the old one
(created first: MySQL's foreign key on ``user_id`` needs an index at every moment).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index posts by user, then id; drop the index by user alone."""
    op.create_index(op.f("ix_posts_user_id_id"), "posts", ["user_id", "id"])
    op.drop_index(op.f("ix_posts_user_id"), table_name="posts")


def downgrade() -> None:
    """Back to the index by user alone."""
    op.create_index(op.f("ix_posts_user_id"), "posts", ["user_id"])
    op.drop_index(op.f("ix_posts_user_id_id"), table_name="posts")
