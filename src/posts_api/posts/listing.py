"""A user's list of posts as JSON bytes, as cached, and the pages cut from it.

Each post is serialized on its own and the items are joined with ``,`` inside ``[``/``]``, so
any run of items joined the same way is byte-for-byte what the database path produces for that
page: a page has one body, hence one tag, wherever it comes from.

The cache entry is the response itself behind a small binary header, so a hit needs no JSON
parsing and no hashing::

    b"PL1" | count (u32) | etag (24 ASCII bytes) | ids (count x i64) | starts (count x i64) | body

``starts[i]`` is the offset of item ``i`` in ``body``; a page is a bisection of ``ids`` and a
slice of ``body``. The leading ``PL1`` names the format: an entry without it (a list cached by
an earlier version, plain JSON) is read as a miss, never misparsed.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import TypeAdapter

from posts_api.posts.conditions import list_tag
from posts_api.posts.repository import StoredPost
from posts_api.posts.schemas import PostOut

MAGIC = b"PL1"
HEADER = struct.Struct("<3sI24s")  # a list tag is always 24 bytes: quotes around 22 base64url
_POST = TypeAdapter(PostOut)


def serialize(row: StoredPost) -> bytes:
    """One post as the compact JSON object the API returns in lists."""
    return _POST.dump_json(PostOut.model_validate(row))


def join(items: Iterable[bytes]) -> bytes:
    """A JSON array of serialized items."""
    return b"[" + b",".join(items) + b"]"


@dataclass(frozen=True)
class ListQuery:
    """Which posts a GET /posts asks for: ids above ``after``, at most ``limit`` (``None``: all)."""

    after: int = 0
    limit: int | None = None


@dataclass(frozen=True)
class Page:
    """A list or a page, ready to send.

    ``body`` is ``None`` when the client's ``If-None-Match`` already names this representation
    (a 304). ``next_after`` is the page's last id when more posts follow it (a ``Link`` header).
    """

    body: bytes | None
    etag: str
    next_after: int | None = None


class CachedList:
    """Every post of one user: the body, its tag, and each item's id and offset.

    Built once when a miss reads the list, stored packed, and read back without parsing.
    """

    def __init__(self, *, etag: str, ids: array[int], starts: array[int], body: bytes) -> None:
        """Hold the parts; ``ids`` ascending, ``starts[i]`` the offset of item ``i`` in ``body``."""
        self.etag = etag
        self.ids = ids
        self.starts = starts
        self.body = body

    @classmethod
    def build(cls, *, user_id: int, ids: list[int], items: list[bytes]) -> CachedList:
        """Assemble the list of ``user_id`` from its serialized items (hashing it once)."""
        starts = array("q")
        offset = 1
        for item in items:
            starts.append(offset)
            offset += len(item) + 1
        body = join(items)
        return cls(
            etag=list_tag(user_id=user_id, body=body), ids=array("q", ids), starts=starts, body=body
        )

    def pack(self) -> bytes:
        """The cache entry: header, ids, offsets, body."""
        head = HEADER.pack(MAGIC, len(self.ids), self.etag.encode("ascii"))
        return b"".join((head, self.ids.tobytes(), self.starts.tobytes(), self.body))

    @classmethod
    def unpack(cls, entry: bytes) -> CachedList | None:
        """Read back what ``pack`` stored; ``None`` for an entry in another format."""
        if not entry.startswith(MAGIC) or len(entry) < HEADER.size:
            return None
        _magic, count, etag = HEADER.unpack_from(entry)
        view = memoryview(entry)
        ids, starts = array("q"), array("q")
        middle = HEADER.size + 8 * count
        ids.frombytes(view[HEADER.size : middle])
        starts.frombytes(view[middle : middle + 8 * count])
        return cls(
            etag=etag.decode("ascii"), ids=ids, starts=starts, body=entry[middle + 8 * count :]
        )

    def page(self, *, user_id: int, query: ListQuery) -> Page:
        """The posts ``query`` asks for, cut from this list: no database, one hash at most."""
        count = len(self.ids)
        first = bisect_right(self.ids, query.after)
        end = count if query.limit is None else min(count, first + query.limit)
        if first == 0 and end == count:
            return Page(self.body, self.etag)
        if first >= end:
            body = b"[]"
        else:
            stop = self.starts[end] - 1 if end < count else len(self.body) - 1
            body = b"[" + self.body[self.starts[first] : stop] + b"]"
        following = self.ids[end - 1] if first < end < count else None
        return Page(body, list_tag(user_id=user_id, body=body), following)
