"""Each injectable, named once as an ``Annotated`` alias so route signatures read like sentences.

Everything comes from ``app.state``, filled by the application's lifespan: one engine, session
factory, cache and token codec per process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from posts_api.core.cache import Cache
from posts_api.core.config import Settings
from posts_api.core.errors import Unauthorized
from posts_api.core.security import InvalidToken, TokenCodec, bearer_token


def get_settings(request: Request) -> Settings:
    """The process's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for this request; it connects on its first query, so unused it costs nothing.

    Services own their transactions; this only closes the session (returning its connection to
    the pool) once the response is done.
    """
    async with request.app.state.sessionmaker() as session:
        yield session


def get_cache(request: Request) -> Cache:
    """The process's cache (in-process or Redis)."""
    cache: Cache = request.app.state.cache
    return cache


def get_tokens(request: Request) -> TokenCodec:
    """The codec that signs and verifies access tokens."""
    tokens: TokenCodec = request.app.state.tokens
    return tokens


class BearerUser(HTTPBearer):
    """The current user's id, read from ``Authorization: Bearer <token>``; no database query.

    Declared as FastAPI's HTTP bearer scheme, so ``/docs`` shows an Authorize button. Any
    problem with the token is a 401 with ``WWW-Authenticate: Bearer``.
    """

    async def __call__(self, request: Request) -> int:  # type: ignore[override]
        """Verify the token and return its ``sub`` as an int."""
        try:
            token = bearer_token(request.headers.get("authorization"))
            return get_tokens(request).verify(token)
        except InvalidToken:
            raise Unauthorized() from None


bearer_user = BearerUser(
    bearerFormat="JWT", description="The access_token from /auth/signup or /auth/login."
)

SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
CacheDep = Annotated[Cache, Depends(get_cache)]
TokensDep = Annotated[TokenCodec, Depends(get_tokens)]
CurrentUserId = Annotated[int, Depends(bearer_user)]
