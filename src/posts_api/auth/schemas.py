"""Request and response bodies of ``/auth``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field

from posts_api.core.schemas import StrictIn, Utf8


def _email_syntax(value: str) -> str:
    """Check the address's syntax only, with no DNS look-up.

    ``.test`` domains, reserved for testing, pass; other special-use domains (``.local``,
    ``.invalid``, ``localhost``...) do not.
    """
    try:
        validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None
    return value


EmailAddress = Annotated[
    str,
    Field(max_length=254, json_schema_extra={"format": "email"}),
    Utf8,
    AfterValidator(_email_syntax),
]
"""An email address of at most 254 characters, as typed (the service lower-cases it)."""


Password = Annotated[str, Field(min_length=8, max_length=128), Utf8]
"""A password: 8 to 128 characters."""


class CredentialsIn(StrictIn):
    """An email and a password, for sign-up and log-in alike."""

    email: EmailAddress
    password: Password


class RefreshIn(StrictIn):
    """A refresh token to spend.

    Any string is accepted here: one that is not a live refresh token, whatever its length, is
    the same 401.
    """

    refresh_token: str


class PasswordChangeIn(StrictIn):
    """The current password (to confirm) and the new one."""

    current_password: Password
    new_password: Password


class PasswordIn(StrictIn):
    """The account's password, to confirm a deletion."""

    password: Password


class TokenOut(BaseModel):
    """A session's tokens.

    Send ``access_token`` as ``Authorization: Bearer <access_token>``; spend ``refresh_token``
    once at /auth/refresh for new ones.
    """

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="The access token's lifetime in seconds.")
    refresh_token: str = Field(description="Works once at /auth/refresh; at most 512 characters.")
    refresh_expires_in: int = Field(description="The refresh token's lifetime in seconds.")


class AccountOut(BaseModel):
    """The caller's account, as stored."""

    user_id: int
    email: str
    created_at: dt.datetime
