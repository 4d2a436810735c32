"""Request and response bodies of ``/auth``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, Field

from posts_api.core.schemas import StrictIn, Utf8


class CredentialsIn(StrictIn):
    """An email and a password, for sign-up and log-in alike."""

    email: Annotated[EmailStr, Field(max_length=254)]
    password: Annotated[str, Field(min_length=8, max_length=128), Utf8]


class TokenOut(BaseModel):
    """An access token: send it back as ``Authorization: Bearer <access_token>``."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="The token's lifetime in seconds.")
