"""Entity tags and the parsing of If-Match / If-None-Match (RFC 9110 section 13.1)."""

from __future__ import annotations

import datetime as dt

import pytest

from posts_api.posts.conditions import (
    list_tag,
    parse_tags,
    post_tag,
    updated_at_named,
)

MOMENT = dt.datetime(2026, 12, 2, 4, 42, 54, 123456, tzinfo=dt.UTC)


def test_an_absent_header_is_none() -> None:
    assert parse_tags(None) is None


@pytest.mark.parametrize("header", ["*", " * "])
def test_star_matches_anything(header: str) -> None:
    tags = parse_tags(header)
    assert tags is not None
    assert tags.any
    assert tags.matches_weakly('"whatever"')


def test_a_list_of_tags() -> None:
    tags = parse_tags('"a", W/"b" ,"c"')
    assert tags is not None
    assert tags.tags == ((False, '"a"'), (True, '"b"'), (False, '"c"'))
    assert tags.strong_tags() == ['"a"', '"c"']


def test_if_none_match_compares_weakly() -> None:
    tags = parse_tags('W/"x"')
    assert tags is not None
    assert tags.matches_weakly('"x"')
    assert not tags.matches_weakly('"y"')


def test_if_match_never_takes_a_weak_tag() -> None:
    tags = parse_tags('W/"x"')
    assert tags is not None
    assert tags.strong_tags() == []


@pytest.mark.parametrize("header", ["", "x", 'garbage, "a"', '"unterminated', "W/x", "**"])
def test_malformed_headers_list_nothing_usable(header: str) -> None:
    tags = parse_tags(header)
    assert tags is not None
    assert not tags.any
    assert not tags.matches_weakly('"a"')


def test_a_malformed_member_ends_the_list() -> None:
    tags = parse_tags('"a", nonsense, "b"')
    assert tags is not None
    assert tags.tags == ((False, '"a"'),)


def test_list_tags_are_strong_quoted_and_per_user() -> None:
    tag = list_tag(user_id=1, body=b"[]")
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert len(tag) == 24
    assert tag != list_tag(user_id=2, body=b"[]")
    assert tag != list_tag(user_id=1, body=b"[ ]")
    assert tag == list_tag(user_id=1, body=b"[]")


def test_a_post_tag_names_its_post_and_time() -> None:
    tag = post_tag(post_id=7, updated_at=MOMENT)
    assert updated_at_named(post_id=7, tags=[tag]) == [MOMENT]
    assert updated_at_named(post_id=8, tags=[tag]) == []  # another post's tag


def test_foreign_and_absurd_tags_name_no_time() -> None:
    absurd = f'"p7.{10**19}"'
    assert updated_at_named(post_id=7, tags=['"abc"', absurd, '"p7.x"']) == []
