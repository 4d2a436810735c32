"""GET /posts?limit=N&after=ID: keyset pages, their bounds, Link, and pages from the cache."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from posts_api.posts.repository import PostRepository, StoredPost
from tests.e2e.test_posts import create
from tests.support import MakeApp, StatementLog, User, sign_up

MAX_ID = 2**63 - 1


async def ids(client: httpx.AsyncClient, user: User, query: str = "") -> list[int]:
    """The post ids of one answer of GET /posts (200 expected)."""
    resp = await client.get("/posts" + query, headers=user.auth)
    assert resp.status_code == 200, resp.text
    return [post["post_id"] for post in resp.json()]


async def walk(client: httpx.AsyncClient, user: User, limit: int) -> list[list[int]]:
    """Follow rel="next" from the first page; every page's ids."""
    pages: list[list[int]] = []
    url: str | None = f"/posts?limit={limit}"
    while url is not None:
        resp = await client.get(url, headers=user.auth)
        assert resp.status_code == 200, resp.text
        pages.append([post["post_id"] for post in resp.json()])
        link = resp.headers.get("link")
        url = None
        if link is not None:
            assert link.endswith('>; rel="next"'), link
            url = link[1 : link.index(">")]
            assert url == f"/posts?limit={limit}&after={pages[-1][-1]}"
        assert len(pages) < 50
    return pages


@pytest.fixture
async def five(client: httpx.AsyncClient, user: User, other_user: User) -> list[int]:
    """Five posts of ``user``, interleaved with posts of ``other_user``."""
    mine = []
    for i in range(5):
        mine.append(await create(client, user, f"mine {i}"))
        await create(client, other_user, f"theirs {i}")
    return mine


@pytest.mark.parametrize("cached", [False, True])
async def test_pages_follow_link_to_the_end(
    client: httpx.AsyncClient, user: User, five: list[int], cached: bool
) -> None:
    if cached:
        assert await ids(client, user) == five
    assert await walk(client, user, 2) == [five[0:2], five[2:4], five[4:]]
    assert await walk(client, user, 5) == [five]  # exactly full: no next
    assert await walk(client, user, 1000) == [five]


@pytest.mark.parametrize("cached", [False, True])
async def test_after_alone_and_past_every_id(
    client: httpx.AsyncClient, user: User, five: list[int], cached: bool
) -> None:
    if cached:
        await ids(client, user)
    assert await ids(client, user, f"?after={five[1]}") == five[2:]
    assert await ids(client, user, f"?after={five[1] + 1}") == five[2:]
    assert await ids(client, user, "?after=0") == five
    assert await ids(client, user, f"?after={five[-1]}") == []
    assert await ids(client, user, f"?after={MAX_ID}&limit=3") == []
    assert await ids(client, user, f"?limit=2&after={five[2]}") == five[3:5]
    resp = await client.get(f"/posts?limit=2&after={five[2]}", headers=user.auth)
    assert "link" not in resp.headers  # the last page


async def test_other_users_posts_never_appear(
    client: httpx.AsyncClient, user: User, other_user: User, five: list[int]
) -> None:
    theirs = await ids(client, other_user)
    assert len(theirs) == 5
    assert not set(theirs) & set(five)
    for query in ("?limit=3", f"?after={five[0]}", "?limit=1&after=0", f"?after={theirs[0]}"):
        assert set(await ids(client, user, query)) <= set(five)


async def test_pages_after_writes(client: httpx.AsyncClient, user: User, five: list[int]) -> None:
    assert await ids(client, user, "?limit=2") == five[:2]
    await ids(client, user)  # cached
    await client.delete(f"/posts/post/{five[0]}", headers=user.auth)
    assert await ids(client, user, "?limit=2") == five[1:3]
    new = await create(client, user, "new")
    assert await ids(client, user, f"?after={five[-1]}") == [new]
    await client.put(f"/posts/post/{five[1]}", json={"text": "edited"}, headers=user.auth)
    resp = await client.get("/posts?limit=1", headers=user.auth)
    assert resp.json()[0]["text"] == "edited"


async def test_a_page_from_the_cache_makes_no_database_call(
    client: httpx.AsyncClient, app: FastAPI, user: User, five: list[int], statements: StatementLog
) -> None:
    full = await client.get("/posts", headers=user.auth)
    with statements.watching(app) as sent:
        page = await client.get(f"/posts?limit=2&after={five[0]}", headers=user.auth)
        rest = await client.get(f"/posts?after={five[2]}", headers=user.auth)
    assert sent == []
    assert page.json() == full.json()[1:3]
    assert rest.json() == full.json()[3:]


async def test_a_page_has_one_tag_and_body_from_cache_or_database(
    client: httpx.AsyncClient, user: User, five: list[int]
) -> None:
    queries = ["", "?limit=2", f"?limit=2&after={five[1]}", f"?after={five[2]}", "?after=0"]
    fresh = [await client.get("/posts" + q, headers=user.auth) for q in queries]
    await client.get("/posts", headers=user.auth)  # now cached
    cached = [await client.get("/posts" + q, headers=user.auth) for q in queries]
    for a, b in zip(fresh, cached, strict=True):
        assert a.content == b.content
        assert a.headers["etag"] == b.headers["etag"]
        assert a.headers.get("link") == b.headers.get("link")
    assert fresh[0].headers["etag"] == fresh[-1].headers["etag"]  # after=0 is the list


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0",
        "?limit=-1",
        "?limit=1001",
        "?limit=abc",
        "?limit=1.5",
        "?limit=",
        "?after=-1",
        f"?after={MAX_ID + 1}",
        "?after=x",
        "?after=",
        "?limit=1e3",
    ],
)
async def test_bad_limits_and_cursors_are_422(
    client: httpx.AsyncClient, user: User, query: str
) -> None:
    resp = await client.get("/posts" + query, headers=user.auth)
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], list)
    unauthenticated = await client.get("/posts" + query)
    assert unauthenticated.status_code == 401  # the token is checked first
    bad_token = await client.get("/posts" + query, headers={"Authorization": "Bearer x"})
    assert bad_token.status_code == 401


async def test_the_page_maximum_is_the_setting(make_app: MakeApp) -> None:
    client = await make_app(posts_page_max=3)
    user = await sign_up(client)
    assert (await client.get("/posts?limit=3", headers=user.auth)).status_code == 200
    assert (await client.get("/posts?limit=4", headers=user.auth)).status_code == 422
    schema = (await client.get("/openapi.json")).json()
    (limit,) = [p for p in schema["paths"]["/posts"]["get"]["parameters"] if p["name"] == "limit"]
    assert {"type": "integer", "minimum": 1, "maximum": 3}.items() <= limit["schema"]["anyOf"][
        0
    ].items()


async def test_limits_at_the_bounds(client: httpx.AsyncClient, user: User, five: list[int]) -> None:
    assert await ids(client, user, "?limit=1") == five[:1]
    assert await ids(client, user, "?limit=1000") == five
    assert await ids(client, user, f"?after={MAX_ID}") == []


@pytest.mark.parametrize(("limit", "more"), [(7, True), (8, True), (9, False), (12, False)])
async def test_a_page_above_the_cap_is_streamed_with_its_link(
    make_app: MakeApp, limit: int, more: bool
) -> None:
    """A page whose JSON passes POSTS_CACHE_MAX_ENTRY_BYTES: no tag, no length, the right Link."""
    client = await make_app(posts_cache_max_entry_bytes=500)
    user = await sign_up(client)
    mine = [await create(client, user, f"{i:03d}" + "x" * 97) for i in range(10)]
    resp = await client.get(f"/posts?limit={limit}&after={mine[0]}", headers=user.auth)
    assert resp.status_code == 200
    assert "etag" not in resp.headers
    assert "content-length" not in resp.headers  # streamed
    expected = mine[1 : 1 + limit]
    assert [post["post_id"] for post in resp.json()] == expected
    assert [post["text"][:3] for post in resp.json()] == [f"{i:03d}" for i in range(1, 10)][:limit]
    link = f'</posts?limit={limit}&after={expected[-1]}>; rel="next"' if more else None
    assert resp.headers.get("link") == link
    assert await walk(client, user, 4) == [mine[0:4], mine[4:8], mine[8:]]  # streamed pages too


async def test_a_long_post_deleted_under_a_page_read_leaves_the_page_full_with_its_link(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long text is read on its own after its batch; deleted in between, it is skipped, and
    the page still holds ``limit`` posts and says that more follow (the next one takes its
    place), instead of ending short without a Link."""
    client = await make_app()
    user = await sign_up(client)
    long_id = await create(client, user, "L" * 10_000)
    rest = [await create(client, user, f"s{i}") for i in range(3)]
    read_alone = PostRepository.get_owned

    async def deleted_first(
        self: PostRepository, *, user_id: int, post_id: int
    ) -> StoredPost | None:
        if post_id == long_id:  # a racing DELETE lands between the batch and this read
            gone = await client.delete(f"/posts/post/{post_id}", headers=user.auth)
            assert gone.status_code == 204
        return await read_alone(self, user_id=user_id, post_id=post_id)

    monkeypatch.setattr(PostRepository, "get_owned", deleted_first)
    resp = await client.get("/posts?limit=2", headers=user.auth)
    assert [post["post_id"] for post in resp.json()] == rest[:2]
    assert resp.headers.get("link") == f'</posts?limit=2&after={rest[1]}>; rel="next"'
