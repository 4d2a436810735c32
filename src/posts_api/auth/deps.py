"""The auth domain's injectable: its service, as an ``Annotated`` alias."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from posts_api.auth.service import AuthService


async def get_auth_service(request: Request) -> AuthService:
    """The process's ``AuthService``, built once by ``create_app``."""
    service: AuthService = request.app.state.auth
    return service


Auth = Annotated[AuthService, Depends(get_auth_service)]
