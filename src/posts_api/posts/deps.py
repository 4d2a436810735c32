"""The posts domain's injectables, as ``Annotated`` aliases.

Its service, and the caller of GET /posts with their cached list read in the session check's
round trip.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from posts_api.core.deps import DESCRIPTION, BearerCaller
from posts_api.core.security import Caller
from posts_api.posts.service import PostService, list_name


async def get_post_service(request: Request) -> PostService:
    """The process's ``PostService``, built once by ``create_app``."""
    service: PostService = request.app.state.posts
    return service


Posts = Annotated[PostService, Depends(get_post_service)]


bearer_with_list = BearerCaller(
    prefetch=lambda user_id: (list_name(user_id),), description=DESCRIPTION
)
CallerWithList = Annotated[Caller, Depends(bearer_with_list)]
"""The caller, with ``prefetched[0]`` their cached list entry: a cached GET /posts is one
cache round trip in all."""
