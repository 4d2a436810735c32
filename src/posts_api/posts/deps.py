"""The posts domain's injectables, as ``Annotated`` aliases.

Its service, and everything GET /posts needs, gathered by one call: the caller with their cached
list (read in the session check's round trip), the page asked for and ``If-None-Match``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from posts_api.core.deps import request_caller
from posts_api.posts.conditions import TagList, parse_tags
from posts_api.posts.listing import ListQuery
from posts_api.posts.schemas import ListParams
from posts_api.posts.service import CachedRead, PostService, list_name


async def get_post_service(request: Request) -> PostService:
    """The process's ``PostService``, built once by ``create_app``."""
    service: PostService = request.app.state.posts
    return service


Posts = Annotated[PostService, Depends(get_post_service)]


@dataclass(frozen=True, slots=True)
class ListCall:
    """What GET /posts needs: the service, the caller's id, the page, the cached list."""

    posts: PostService
    user_id: int
    query: ListQuery
    if_none_match: TagList | None
    cached: CachedRead


def _list_entry(user_id: int) -> tuple[str]:
    """The cache entry read with the session check: the caller's list."""
    return (list_name(user_id),)


async def list_request(request: Request) -> ListCall:
    """What GET /posts asks for, the caller authenticated first (401), then the query (422).

    GET /posts, the hot path, calls this from its handler instead of declaring it as a
    dependency: FastAPI's work per dependency (cache key, scope and generator checks) would
    cost the route more than its cache hit. So the route declares its parameters
    (``LIST_PARAMETERS``) and its bearer security (``BEARER_SECURITY``) in OpenAPI by hand, and
    bad values are FastAPI's usual 422, raised here.
    """
    caller = await request_caller(request, prefetch=_list_entry)
    posts: PostService = request.app.state.posts
    query = ListQuery()
    if request.scope["query_string"]:  # parsed only when there is one
        query = list_query(request.query_params, page_max=posts.page_max)
    return ListCall(
        posts=posts,
        user_id=caller.user_id,
        query=query,
        if_none_match=parse_tags(request.headers.get("if-none-match")),
        cached=caller.prefetched[0],
    )


def list_query(params: Mapping[str, str], *, page_max: int) -> ListQuery:
    """The page that ``?limit=N&after=ID`` asks for. Raises ``RequestValidationError`` (422)."""
    if "limit" not in params and "after" not in params:
        return ListQuery()
    given = {name: params[name] for name in ("limit", "after") if name in params}
    try:
        parsed = ListParams.model_validate(given)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        ) from None
    if parsed.limit is not None and parsed.limit > page_max:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("query", "limit"),
                    "msg": f"Input should be less than or equal to {page_max}",
                    "ctx": {"le": page_max},
                }
            ]
        )
    return ListQuery(after=parsed.after, limit=parsed.limit)


def _list_parameters() -> list[dict[str, Any]]:
    """The OpenAPI parameters of GET /posts: ``ListParams``'s fields and ``If-None-Match``."""
    fields = ListParams.model_json_schema()["properties"]
    query = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": schema.pop("description"),
            "schema": schema,
        }
        for name, schema in fields.items()
    ]
    condition = {
        "name": "if-none-match",
        "in": "header",
        "required": False,
        "description": "Entity tags (or ``*``): a match is a 304 with no body.",
        "schema": {"type": "string", "title": "If-None-Match"},
    }
    return [*query, condition]


LIST_PARAMETERS = _list_parameters()
"""GET /posts's parameters as OpenAPI declares them (``list_request`` reads them itself)."""
