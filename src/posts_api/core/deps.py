"""The shared injectables, each named once as an ``Annotated`` alias.

Everything comes from ``app.state``, filled by ``create_app``: one engine, session factory,
cache, token codec and session guard per process. Every dependency is ``async def``: FastAPI
runs a plain ``def`` dependency in a thread pool, which costs far more than these reads. Domain
services have their aliases beside them (``posts/deps.py``, ``auth/deps.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.core.cache import Cache
from posts_api.core.errors import Unauthorized
from posts_api.core.security import Caller, InvalidToken, authenticate


async def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """The process's session factory; a session connects on its first query."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


async def get_cache(request: Request) -> Cache:
    """The process's cache (in-process or Redis)."""
    cache: Cache = request.app.state.cache
    return cache


class BearerCaller(HTTPBearer):
    """The caller, from ``Authorization: Bearer <token>``: a valid token of a live session.

    Declared as FastAPI's HTTP bearer scheme (one scheme name for every variant), so ``/docs``
    shows an Authorize button. Any problem with the token or its session is a 401 with
    ``WWW-Authenticate: Bearer``. The session check costs one cache round trip (no database
    statement while the cache knows the session); ``prefetch`` names, from the user id, further
    cache entries to read in that same round trip (GET /posts reads its list so).
    """

    def __init__(
        self, *, prefetch: Callable[[int], Sequence[str]] | None = None, description: str
    ) -> None:
        """Declare the scheme; ``prefetch(user_id)`` names entries to read with the session."""
        super().__init__(bearerFormat="JWT", scheme_name="BearerUser", description=description)
        self.prefetch = prefetch

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        """Verify the token and its session; return the caller (and the prefetched entries)."""
        return await request_caller(request, prefetch=self.prefetch)

    async def authenticate(self, request: Request) -> Caller:
        """The caller, by this class's check alone (subclasses add to ``__call__``).

        The 422 handler runs it: a protected route's bad input is a 401 first if the token is bad.
        """
        return await BearerCaller.__call__(self, request)


async def request_caller(
    request: Request, *, prefetch: Callable[[int], Sequence[str]] | None = None
) -> Caller:
    """The caller of ``request``, as ``BearerCaller`` checks it; ``Unauthorized`` (401) if none.

    For a route that authenticates in its handler rather than through a dependency (GET /posts:
    see ``posts.deps.list_request``); such a route declares ``BEARER_SECURITY`` in OpenAPI.
    """
    state = request.app.state
    try:
        return await authenticate(
            request.headers.get("authorization"),
            tokens=state.tokens,
            guard=state.session_guard,
            prefetch=prefetch,
        )
    except InvalidToken:
        raise Unauthorized() from None


class BearerUser(BearerCaller):
    """Like ``BearerCaller``, for routes that need only the user's id."""

    async def __call__(self, request: Request) -> int:  # type: ignore[override]
        """Verify the token and its session; return the user's id."""
        return (await super().__call__(request)).user_id


DESCRIPTION = "The access_token from /auth/signup, /auth/login or /auth/refresh."
bearer_caller = BearerCaller(description=DESCRIPTION)
bearer_user = BearerUser(description=DESCRIPTION)

BEARER_SECURITY: list[dict[str, list[str]]] = [{bearer_user.scheme_name: []}]
"""The OpenAPI security requirement the bearer dependencies declare, for ``request_caller``."""

SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
CacheDep = Annotated[Cache, Depends(get_cache)]
CurrentUserId = Annotated[int, Depends(bearer_user)]
"""The caller's user id (token and live session checked)."""
CurrentCaller = Annotated[Caller, Depends(bearer_caller)]
"""The caller: user id and session id (token and live session checked)."""
