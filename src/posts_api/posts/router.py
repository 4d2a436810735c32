"""HTTP routes of ``/posts``: each needs a bearer token and acts only on the caller's posts."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from posts_api.core.deps import CurrentUserId
from posts_api.core.errors import documented
from posts_api.posts.deps import CallerWithList, Posts
from posts_api.posts.schemas import PostCreatedOut, PostId, PostIn, PostOut

router = APIRouter(prefix="/posts", tags=["posts"])


@router.get("", response_model=list[PostOut], responses=documented(401, 503))
async def list_posts(caller: CallerWithList, posts: Posts) -> Response:
    """List the caller's posts, oldest first (cached per user)."""
    body = await posts.list_posts(caller.user_id, cached=caller.prefetched[0])
    return Response(body, media_type="application/json")


@router.post("/post", status_code=status.HTTP_201_CREATED, responses=documented(401, 413, 503))
async def create_post(post: PostIn, user_id: CurrentUserId, posts: Posts) -> PostCreatedOut:
    """Create a post and return its id."""
    return PostCreatedOut(post_id=await posts.create_post(user_id, post))


@router.get("/post/{post_id}", responses=documented(401, 404, 503))
async def get_post(post_id: PostId, user_id: CurrentUserId, posts: Posts) -> PostOut:
    """Return one of the caller's posts."""
    return await posts.get_post(user_id, post_id)


@router.put("/post/{post_id}", responses=documented(401, 404, 413, 503))
async def update_post(
    post_id: PostId, post: PostIn, user_id: CurrentUserId, posts: Posts
) -> PostOut:
    """Replace the text of one of the caller's posts and return it."""
    return await posts.update_post(user_id, post_id, post)


@router.delete(
    "/post/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(401, 404, 503)
)
async def delete_post(post_id: PostId, user_id: CurrentUserId, posts: Posts) -> None:
    """Delete one of the caller's posts."""
    await posts.delete_post(user_id, post_id)
