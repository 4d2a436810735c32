"""The shared Pydantic bases: strict request bodies and text that can be stored as UTF-8."""

from __future__ import annotations

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictIn(BaseModel):
    """Base of every request body: unknown fields and type coercion are 422s."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _encodable(value: str) -> str:
    r"""Refuse lone surrogates (``"\\ud800"`` is valid JSON but not storable text)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


Utf8 = AfterValidator(_encodable)
"""Metadata for ``Annotated[str, ..., Utf8]``: the text encodes to UTF-8 (any Unicode, emoji
included); put it after the length constraints so their messages speak of characters."""
