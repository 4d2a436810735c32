"""HTTP routes of ``/auth``: parse, call the service, answer. No rules live here.

Every answer that carries tokens has ``Cache-Control: no-store``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from posts_api.auth.deps import Auth
from posts_api.auth.schemas import (
    AccountOut,
    CredentialsIn,
    PasswordChangeIn,
    PasswordIn,
    RefreshIn,
    TokenOut,
)
from posts_api.core.deps import CurrentCaller, CurrentUserId
from posts_api.core.errors import documented

router = APIRouter(prefix="/auth", tags=["auth"])


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/signup", status_code=status.HTTP_201_CREATED, responses=documented(409, 413, 503))
async def sign_up(credentials: CredentialsIn, response: Response, auth: Auth) -> TokenOut:
    """Create an account and start its first session."""
    _no_store(response)
    return await auth.sign_up(credentials)


@router.post("/login", responses=documented(401, 413, 429, 503))
async def log_in(
    credentials: CredentialsIn, request: Request, response: Response, auth: Auth
) -> TokenOut:
    """Exchange an email and password for the tokens of a new session."""
    _no_store(response)
    return await auth.log_in(credentials, _address(request))


@router.post("/refresh", responses=documented(401, 413, 503))
async def refresh(body: RefreshIn, response: Response, auth: Auth) -> TokenOut:
    """Spend a refresh token (once) for the session's next access and refresh tokens.

    A refresh token presented a second time ends its session (reuse detection).
    """
    _no_store(response)
    return await auth.refresh(body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=documented(401, 503))
async def log_out(caller: CurrentCaller, auth: Auth) -> None:
    """End the caller's session; the user's other sessions keep working."""
    await auth.log_out(user_id=caller.user_id, session_id=caller.session_id)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=documented(401, 503))
async def log_out_everywhere(user_id: CurrentUserId, auth: Auth) -> None:
    """End every session of the caller, this one included."""
    await auth.log_out_everywhere(user_id=user_id)


@router.get("/me", responses=documented(401, 503))
async def get_account(user_id: CurrentUserId, auth: Auth) -> AccountOut:
    """The caller's account."""
    return await auth.get_account(user_id=user_id)


@router.put("/password", responses=documented(401, 403, 413, 429, 503))
async def change_password(
    change: PasswordChangeIn,
    user_id: CurrentUserId,
    request: Request,
    response: Response,
    auth: Auth,
) -> TokenOut:
    """Change the password: every session ends, and the answer starts a fresh one."""
    _no_store(response)
    return await auth.change_password(change, user_id=user_id, client_address=_address(request))


@router.delete(
    "/me", status_code=status.HTTP_204_NO_CONTENT, responses=documented(401, 403, 413, 429, 503)
)
async def delete_account(
    confirm: PasswordIn, user_id: CurrentUserId, request: Request, auth: Auth
) -> None:
    """Delete the account, its posts and its sessions."""
    await auth.delete_account(confirm.password, user_id=user_id, client_address=_address(request))
