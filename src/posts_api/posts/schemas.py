"""Request and response bodies of ``/posts``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from posts_api.core.schemas import StrictIn, Utf8

PostId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The post's id.")]
"""A post id in a path: a positive integer (anything else is a 422)."""


class PostIn(StrictIn):
    """The body of a create or an update: the text, stored exactly as sent."""

    text: Annotated[str, Field(min_length=1), Utf8]


class PostCreatedOut(BaseModel):
    """The answer to a create: the new post's id."""

    post_id: int


class PostOut(BaseModel):
    """A post as returned by the API; timestamps are UTC with an explicit offset."""

    model_config = ConfigDict(from_attributes=True)

    post_id: int
    text: str
    created_at: dt.datetime
    updated_at: dt.datetime


class ListParams(BaseModel):
    """The query of GET /posts: a page of at most ``limit`` posts whose ids are above ``after``.

    ``limit``'s upper bound is the ``POSTS_PAGE_MAX`` setting, checked where the setting is
    known (``posts.deps``).
    """

    limit: int | None = Field(
        default=None,
        ge=1,
        description="At most this many posts (1 to POSTS_PAGE_MAX); default: all.",
    )
    after: int = Field(
        default=0, ge=0, le=2**63 - 1, description="Only posts whose post_id is above this."
    )
