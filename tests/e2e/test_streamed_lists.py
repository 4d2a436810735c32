"""Lists above POSTS_CACHE_MAX_ENTRY_BYTES: streamed whole from one SELECT, never cached."""

from __future__ import annotations

import httpx

from posts_api.posts.listing import ListQuery
from posts_api.posts.service import PostService, Stream
from tests.e2e.test_posts import create
from tests.support import MakeApp, StatementLog, User, list_read, sign_up, verbs

CAP = 1000  # bytes of JSON: ten posts of 100 characters are well above it


async def small_cap(make_app: MakeApp) -> tuple[httpx.AsyncClient, User, list[int]]:
    """An app with a tiny cache cap, and a user whose list exceeds it."""
    client = await make_app(posts_cache_max_entry_bytes=CAP)
    user = await sign_up(client)
    ids = [await create(client, user, f"{i:03d}" + "x" * 97) for i in range(10)]
    return client, user, ids


async def test_a_list_above_the_cap_is_streamed_whole_without_a_tag(
    make_app: MakeApp, statements: StatementLog, backend: str
) -> None:
    client, user, ids = await small_cap(make_app)
    app = client.app  # type: ignore[attr-defined]
    with statements.watching(app) as sent:
        resp = await client.get("/posts", headers=user.auth)
    assert resp.status_code == 200
    assert verbs(sent) == list_read(backend)
    assert "etag" not in resp.headers
    assert "content-length" not in resp.headers  # streamed
    assert resp.headers["cache-control"] == "private, no-cache"
    posts = resp.json()
    assert [p["post_id"] for p in posts] == ids
    assert [p["text"][:3] for p in posts] == [f"{i:03d}" for i in range(10)]
    paged = []
    for start in range(0, 10, 3):
        after = ids[start - 1] if start else 0
        page = await client.get(f"/posts?limit=3&after={after}", headers=user.auth)
        paged += page.json()
    assert paged == posts  # byte-equivalent items, whichever path served them
    with statements.watching(app) as sent:
        again = await client.get("/posts", headers=user.auth)
    assert verbs(sent) == list_read(backend), "a list above the cap must not be cached"
    assert again.content == resp.content
    assert app.state.list_engine.pool.checkedout() == 0  # the stream gave its connection back


async def test_after_alone_streams_the_rest(make_app: MakeApp) -> None:
    client, user, ids = await small_cap(make_app)
    resp = await client.get(f"/posts?after={ids[1]}", headers=user.auth)
    assert [p["post_id"] for p in resp.json()] == ids[2:]
    assert "etag" not in resp.headers


async def test_a_list_at_the_cap_is_cached(make_app: MakeApp, statements: StatementLog) -> None:
    client, user, ids = await small_cap(make_app)
    full = await client.get("/posts", headers=user.auth)
    for post_id in ids[:6]:
        await client.delete(f"/posts/post/{post_id}", headers=user.auth)
    smaller = await client.get("/posts", headers=user.auth)
    assert len(smaller.content) <= CAP
    assert "etag" in smaller.headers
    with statements.watching(client.app) as sent:  # type: ignore[attr-defined]
        hit = await client.get("/posts", headers=user.auth)
    assert sent == []
    assert hit.content == smaller.content
    assert smaller.json() == full.json()[6:]


async def test_a_stream_held_open_does_not_stall_the_other_requests(
    make_app: MakeApp,
) -> None:
    """A slow client reading a streamed list keeps its connection, never everyone else's."""
    client = await make_app(posts_cache_max_entry_bytes=CAP, db_timeout_seconds=1)
    user = await sign_up(client)
    ids = [await create(client, user, "x" * 100) for _ in range(10)]
    posts: PostService = client.app.state.posts
    stream = await posts.list_posts(user_id=user.id, query=ListQuery())
    assert isinstance(stream, Stream)
    first = await anext(aiter(stream.chunks))  # the cursor is open, and stays so
    try:
        assert first.startswith(b"[")
        resp = await client.get(f"/posts/post/{ids[0]}", headers=user.auth)
        assert resp.status_code == 200
        assert (await client.post("/posts/post", json={"text": "y"}, headers=user.auth)).is_success
    finally:
        await stream.chunks.aclose()  # type: ignore[attr-defined]
