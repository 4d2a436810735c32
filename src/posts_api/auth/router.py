"""HTTP routes of ``/auth``: parse, call the service, answer. No rules live here."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from posts_api.auth.deps import Auth
from posts_api.auth.schemas import CredentialsIn, TokenOut
from posts_api.core.errors import documented

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/signup", status_code=status.HTTP_201_CREATED, responses=documented(409, 413, 503))
async def sign_up(credentials: CredentialsIn, auth: Auth) -> TokenOut:
    """Create an account and return an access token for it."""
    return await auth.sign_up(credentials)


@router.post("/login", responses=documented(401, 413, 429, 503))
async def log_in(credentials: CredentialsIn, request: Request, auth: Auth) -> TokenOut:
    """Exchange an email and password for an access token."""
    address = request.client.host if request.client else "unknown"
    return await auth.log_in(credentials, address)
