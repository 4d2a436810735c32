"""The shared injectables, each named once as an ``Annotated`` alias.

Everything comes from ``app.state``, filled by ``create_app``: one engine, session factory,
cache and token codec per process. Every dependency is ``async def``: FastAPI runs a plain
``def`` dependency in a thread pool, which costs far more than these attribute reads. Domain
services have their aliases beside them (``posts/deps.py``, ``auth/deps.py``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.core.cache import Cache
from posts_api.core.errors import Unauthorized
from posts_api.core.security import InvalidToken, TokenCodec, bearer_token


async def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """The process's session factory; a session connects on its first query."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


async def get_cache(request: Request) -> Cache:
    """The process's cache (in-process or Redis)."""
    cache: Cache = request.app.state.cache
    return cache


class BearerUser(HTTPBearer):
    """The current user's id, read from ``Authorization: Bearer <token>``; no database query.

    Declared as FastAPI's HTTP bearer scheme, so ``/docs`` shows an Authorize button. Any
    problem with the token is a 401 with ``WWW-Authenticate: Bearer``.
    """

    async def __call__(self, request: Request) -> int:  # type: ignore[override]
        """Verify the token and return its ``sub`` as an int."""
        try:
            token = bearer_token(request.headers.get("authorization"))
            tokens: TokenCodec = request.app.state.tokens
            return tokens.verify(token)
        except InvalidToken:
            raise Unauthorized() from None


bearer_user = BearerUser(
    bearerFormat="JWT", description="The access_token from /auth/signup or /auth/login."
)

SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
CacheDep = Annotated[Cache, Depends(get_cache)]
CurrentUserId = Annotated[int, Depends(bearer_user)]
