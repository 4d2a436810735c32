"""Entity tags of posts and lists, and the RFC 9110 conditional headers that name them.

Two kinds of tag, both strong:

* A **list or page** (GET /posts): ``"`` + base64url(BLAKE2b-128(user id + body)) + ``"``. The
  user id is hashed in, so one user's tag never matches another's identical body (``[]``), and
  the same bytes have the same tag whether they come from the cache or the database.
* A **post** (GET /posts/post/{id}): ``"p{post_id}.{updated_at in integer microseconds}"``,
  derived from its columns, so a PUT or DELETE can put ``If-Match`` in its ``WHERE``. Post ids
  are global, so such a tag can never name another user's post.

``If-None-Match`` uses the weak comparison (``W/"x"`` matches ``"x"``); ``If-Match`` the strong
one (a ``W/`` tag never matches). Both accept ``*`` and comma-separated lists.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from dataclasses import dataclass

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# One entity-tag of a list (RFC 9110 section 8.8.3): optional W/, then a quoted opaque string.
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')
_POST_TAG = re.compile(r'"p([0-9]{1,19})\.(-?[0-9]{1,20})"')


@dataclass(frozen=True)
class TagList:
    """A parsed ``If-Match`` or ``If-None-Match``: ``*``, or the tags it lists.

    ``tags`` holds ``(weak, "opaque")`` pairs, quotes included. A malformed member ends the
    list there: what was parsed before it still counts, the rest is ignored (a header that is
    garbage from the start lists nothing, so it matches nothing).
    """

    any: bool
    tags: tuple[tuple[bool, str], ...]

    def matches_weakly(self, etag: str) -> bool:
        """``If-None-Match`` semantics: ``*``, or any listed tag equal to ``etag`` ignoring W/."""
        return self.any or any(opaque == etag for _weak, opaque in self.tags)

    def strong_tags(self) -> list[str]:
        """The tags that can satisfy ``If-Match`` (weak ones never do)."""
        return [opaque for weak, opaque in self.tags if not weak]


def parse_tags(header: str | None) -> TagList | None:
    """Parse an ``If-Match``/``If-None-Match`` value; ``None`` when the header is absent."""
    if header is None:
        return None
    if header.strip() == "*":
        return TagList(any=True, tags=())
    tags: list[tuple[bool, str]] = []
    position = 0
    while position < len(header):
        if not header[position:].strip():
            break
        found = _ENTITY_TAG.match(header, position)
        if found is None:
            break
        tags.append((found.group(1) is not None, found.group(2)))
        position = found.end()
    return TagList(any=False, tags=tuple(tags))


def list_tag(*, user_id: int, body: bytes) -> str:
    """The strong tag of a list or page of ``user_id``'s posts serialized as ``body``."""
    digest = hashlib.blake2b(user_id.to_bytes(8, "big", signed=True), digest_size=16)
    digest.update(body)
    return '"' + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() + '"'


def micros(moment: dt.datetime) -> int:
    """An aware datetime as whole microseconds since the Unix epoch."""
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def post_tag(*, post_id: int, updated_at: dt.datetime) -> str:
    """The strong tag of one post as last written at ``updated_at``."""
    return f'"p{post_id}.{micros(updated_at)}"'


def updated_at_named(*, post_id: int, tags: list[str]) -> list[dt.datetime]:
    """The ``updated_at`` values of the tags that name ``post_id`` (others cannot match it)."""
    moments = []
    for tag in tags:
        found = _POST_TAG.fullmatch(tag)
        if found is None or int(found.group(1)) != post_id:
            continue
        try:
            moments.append(EPOCH + dt.timedelta(microseconds=int(found.group(2))))
        except OverflowError:  # no stored time is that far away: this tag matches nothing
            continue
    return moments
