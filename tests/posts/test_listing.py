"""The cached list format: a page cut from it is byte-identical to the same page built fresh."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from posts_api.posts.listing import CachedList, ListQuery, join, serialize
from posts_api.posts.repository import StoredPost

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
IDS = [3, 5, 6, 10, 11]
ROWS = [StoredPost(i, f"text {i} \u00e9 \U0001f600 \x00", NOW, NOW) for i in IDS]


def fresh(user_id: int, ids: list[int]) -> CachedList:
    """The list of exactly these posts, as the database path builds it."""
    rows = [row for row in ROWS if row.post_id in ids]
    return CachedList.build(user_id=user_id, ids=ids, items=[serialize(r) for r in rows])


def test_pack_and_unpack_round_trip() -> None:
    full = fresh(1, IDS)
    back = CachedList.unpack(full.pack())
    assert back is not None
    assert (back.etag, list(back.ids), list(back.starts), back.body) == (
        full.etag,
        list(full.ids),
        list(full.starts),
        full.body,
    )
    assert [p["post_id"] for p in json.loads(back.body)] == IDS


@pytest.mark.parametrize(
    ("after", "limit", "expected", "following"),
    [
        (0, None, IDS, None),
        (0, 2, [3, 5], 5),
        (5, 2, [6, 10], 10),
        (4, 2, [5, 6], 6),
        (6, None, [10, 11], None),
        (10, 1, [11], None),
        (10, 5, [11], None),
        (11, None, [], None),
        (2**63 - 1, 3, [], None),
        (0, 5, IDS, None),
    ],
)
def test_a_page_from_the_cache_is_the_page_from_the_database(
    after: int, limit: int | None, expected: list[int], following: int | None
) -> None:
    listed = CachedList.unpack(fresh(1, IDS).pack())
    assert listed is not None
    page = listed.page(user_id=1, query=ListQuery(after=after, limit=limit))
    direct = fresh(1, expected)
    assert page.body == direct.body
    assert page.etag == direct.etag
    assert page.next_after == following


def test_items_joined_are_what_a_list_serializer_makes() -> None:
    from pydantic import TypeAdapter

    from posts_api.posts.schemas import PostOut

    models = [PostOut.model_validate(r) for r in ROWS]
    assert join(serialize(r) for r in ROWS) == TypeAdapter(list[PostOut]).dump_json(models)


def test_an_empty_list() -> None:
    empty = CachedList.unpack(fresh(1, []).pack())
    assert empty is not None
    assert empty.page(user_id=1, query=ListQuery(limit=3)).body == b"[]"


@pytest.mark.parametrize("entry", [b"[]", b'[{"post_id":1}]', b"", b"PL1"])
def test_an_entry_in_another_format_is_a_miss(entry: bytes) -> None:
    """A list cached by an earlier version (plain JSON) is not misread."""
    assert CachedList.unpack(entry) is None
