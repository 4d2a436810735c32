"""HTTP routes of ``/auth``: parse, call the service, answer. No rules live here."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from posts_api.auth import service
from posts_api.auth.schemas import CredentialsIn, TokenOut
from posts_api.core.deps import CacheDep, SessionDep, SettingsDep, TokensDep
from posts_api.core.errors import documented

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    responses=documented(409, 413, 503),
)
async def sign_up(credentials: CredentialsIn, session: SessionDep, tokens: TokensDep) -> TokenOut:
    """Create an account and return an access token for it."""
    return await service.sign_up(session, tokens, credentials)


@router.post(
    "/login",
    responses=documented(401, 413, 429, 503),
)
async def log_in(
    credentials: CredentialsIn,
    request: Request,
    session: SessionDep,
    cache: CacheDep,
    tokens: TokensDep,
    settings: SettingsDep,
) -> TokenOut:
    """Exchange an email and password for an access token."""
    address = request.client.host if request.client else "unknown"
    return await service.log_in(session, cache, tokens, settings, credentials, address)
