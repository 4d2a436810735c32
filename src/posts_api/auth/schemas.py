"""Request and response bodies of ``/auth``."""

from __future__ import annotations

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
    str, Field(max_length=254, json_schema_extra={"format": "email"}), AfterValidator(_email_syntax)
]
"""An email address of at most 254 characters, as typed (the service lower-cases it)."""


class CredentialsIn(StrictIn):
    """An email and a password, for sign-up and log-in alike."""

    email: EmailAddress
    password: Annotated[str, Field(min_length=8, max_length=128), Utf8]


class TokenOut(BaseModel):
    """An access token: send it back as ``Authorization: Bearer <access_token>``."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="The token's lifetime in seconds.")
