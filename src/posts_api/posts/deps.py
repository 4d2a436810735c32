"""The posts domain's injectables, as ``Annotated`` aliases.

Its service, and everything GET /posts needs, gathered by one dependency: the caller with their
cached list (read in the session check's round trip), the page asked for and ``If-None-Match``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from posts_api.core.deps import DESCRIPTION, BearerCaller
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


class ListAccess(BearerCaller):
    """The one dependency of GET /posts, the hot path: the caller first (401), then the query (422).

    FastAPI resolves each declared parameter and dependency on every request; gathering the
    caller, the service, ``limit``, ``after`` and ``If-None-Match`` here costs a cached read one
    dependency instead of five. The route still declares the parameters in OpenAPI
    (``LIST_PARAMETERS``), and bad values are FastAPI's usual 422.
    """

    def __init__(self) -> None:
        """Declare the bearer scheme; the session check also reads the caller's list."""
        super().__init__(prefetch=lambda user_id: (list_name(user_id),), description=DESCRIPTION)

    async def __call__(self, request: Request) -> ListCall:  # type: ignore[override]
        """Authenticate, then read the page and the condition the request asks for."""
        caller = await super().__call__(request)
        posts: PostService = request.app.state.posts
        return ListCall(
            posts=posts,
            user_id=caller.user_id,
            query=list_query(request.query_params, page_max=posts.page_max),
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
"""GET /posts's parameters as OpenAPI declares them (its one dependency reads them itself)."""

ListRequest = Annotated[ListCall, Depends(ListAccess())]
"""Everything GET /posts needs, the caller authenticated first."""
