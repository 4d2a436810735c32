"""The posts domain's injectable: its service, as an ``Annotated`` alias."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from posts_api.posts.service import PostService


async def get_post_service(request: Request) -> PostService:
    """The process's ``PostService``, built once by ``create_app``."""
    service: PostService = request.app.state.posts
    return service


Posts = Annotated[PostService, Depends(get_post_service)]
