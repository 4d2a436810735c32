"""HTTP routes of ``/posts``: each needs a bearer token and acts only on the caller's posts.

Representations carry a strong ``ETag`` with ``Cache-Control: private, no-cache`` and
``Vary: Authorization``; ``If-None-Match`` on a GET may answer 304, ``If-Match`` on a PUT or
DELETE 412 (see ``posts.conditions``).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, FastAPI, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from posts_api.core.deps import BEARER_SECURITY, CurrentUserId
from posts_api.core.errors import documented
from posts_api.posts.conditions import parse_tags, post_tag
from posts_api.posts.deps import LIST_PARAMETERS, Posts, list_request
from posts_api.posts.listing import Page
from posts_api.posts.schemas import PostCreatedOut, PostId, PostIn, PostOut

router = APIRouter(prefix="/posts", tags=["posts"])

PRIVATE = {"Cache-Control": "private, no-cache", "Vary": "Authorization"}
_PRIVATE_RAW = [(name.lower().encode(), value.encode()) for name, value in PRIVATE.items()]
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "``If-None-Match`` names the current representation: no body"}
}

Limit = Annotated[
    int | None,
    Query(ge=1, description="At most this many posts (1 to POSTS_PAGE_MAX); default: all."),
]
After = Annotated[
    int, Query(ge=0, le=2**63 - 1, description="Only posts whose post_id is above this.")
]
IfNoneMatch = Annotated[
    str | None, Header(description="Entity tags (or ``*``): a match is a 304 with no body.")
]
IfMatch = Annotated[
    str | None,
    Header(description="Entity tags (or ``*``): the post must be at one of them, else 412."),
]


class ClosingStream(StreamingResponse):
    """A streamed body whose iterator is closed however the response ends.

    Starlette stops iterating when the client goes away but leaves the iterator to the garbage
    collector; closing it at once frees the batch of posts it holds (it holds no connection
    between batches, so an iterator closed before it started has nothing else to give back).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the response, then close the body's iterator (shielded from cancellation)."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


def _tagged(etag: str, body: bytes | None, link: str | None = None) -> Response:
    """A 200 with ``body`` and its tag, or a 304 with the same headers when ``body`` is None.

    The headers are added already encoded (``raw_headers``), the constant ones once for all.
    """
    if body is None:
        response = Response(status_code=status.HTTP_304_NOT_MODIFIED)
    else:
        response = Response(body, media_type="application/json")
    response.raw_headers += [(b"etag", etag.encode()), *_PRIVATE_RAW]
    if link is not None:
        response.raw_headers.append((b"link", link.encode()))
    return response


@router.get(
    "",
    response_model=list[PostOut],
    responses=NOT_MODIFIED | documented(401, 422, 503),
    openapi_extra={"parameters": LIST_PARAMETERS, "security": BEARER_SECURITY},
)
async def list_posts(request: Request) -> Response:
    """List the caller's posts in ascending ``post_id``: all of them, or a page (cached per user).

    A ``Link: <...>; rel="next"`` header names the next page when posts remain after this one.
    """
    call = await list_request(request)
    answer = await call.posts.list_posts(
        user_id=call.user_id,
        query=call.query,
        if_none_match=call.if_none_match,
        cached=call.cached,
    )
    link = None
    if answer.next_after is not None:
        link = f'</posts?limit={call.query.limit}&after={answer.next_after}>; rel="next"'
    if not isinstance(answer, Page):  # too large to cache: streamed, without a tag
        headers = PRIVATE if link is None else PRIVATE | {"Link": link}
        return ClosingStream(answer.chunks, media_type="application/json", headers=headers)
    return _tagged(answer.etag, answer.body, link)


@router.post("/post", status_code=status.HTTP_201_CREATED, responses=documented(401, 413, 503))
async def create_post(post: PostIn, user_id: CurrentUserId, posts: Posts) -> PostCreatedOut:
    """Create a post and return its id."""
    return PostCreatedOut(post_id=await posts.create_post(user_id=user_id, post=post))


def _post_response(post: PostOut, if_none_match: str | None = None) -> Response:
    """The post as JSON with its tag; a 304 if ``If-None-Match`` names that tag."""
    etag = post_tag(post_id=post.post_id, updated_at=post.updated_at)
    conditions = parse_tags(if_none_match)
    if conditions is not None and conditions.matches_weakly(etag):
        return _tagged(etag, None)
    return _tagged(etag, post.__pydantic_serializer__.to_json(post))


@router.get(
    "/post/{post_id}",
    response_model=PostOut,
    responses=NOT_MODIFIED | documented(401, 404, 503),
)
async def get_post(
    post_id: PostId, user_id: CurrentUserId, posts: Posts, if_none_match: IfNoneMatch = None
) -> Response:
    """Return one of the caller's posts, with its ``ETag``."""
    return _post_response(await posts.get_post(user_id=user_id, post_id=post_id), if_none_match)


@router.put(
    "/post/{post_id}", response_model=PostOut, responses=documented(401, 404, 412, 413, 503)
)
async def update_post(
    post_id: PostId,
    post: PostIn,
    user_id: CurrentUserId,
    posts: Posts,
    if_match: IfMatch = None,
) -> Response:
    """Replace the text of one of the caller's posts and return it, with its new ``ETag``."""
    updated = await posts.update_post(
        user_id=user_id, post_id=post_id, post=post, if_match=parse_tags(if_match)
    )
    return _post_response(updated)


@router.delete(
    "/post/{post_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 404, 412, 503),
)
async def delete_post(
    post_id: PostId, user_id: CurrentUserId, posts: Posts, if_match: IfMatch = None
) -> None:
    """Delete one of the caller's posts."""
    await posts.delete_post(user_id=user_id, post_id=post_id, if_match=parse_tags(if_match))


def document_page_max(app: FastAPI, page_max: int) -> None:
    """Make ``/openapi.json`` state this deployment's ``POSTS_PAGE_MAX`` as ``limit``'s maximum.

    The bound is a setting, so the route cannot declare it; the schema is patched once, when
    first built.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for parameter in schema["paths"]["/posts"]["get"]["parameters"]:
                if parameter["name"] == "limit":
                    for option in parameter["schema"].get("anyOf", [parameter["schema"]]):
                        if option.get("type") == "integer":
                            option["maximum"] = page_max
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]
