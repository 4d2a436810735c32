"""Lists above POSTS_CACHE_MAX_ENTRY_BYTES: streamed whole from one SELECT, never cached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import MutableMapping
from typing import Any

import httpx
from fastapi import FastAPI

from posts_api.posts.listing import ListQuery
from posts_api.posts.service import PostService, Stream
from tests.e2e.test_posts import create
from tests.support import MakeApp, StatementLog, User, list_read, pg_rows, sign_up, verbs

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


class StalledReader:
    """GET /posts sent straight to the app by a client that takes the status line and the first
    piece of the body, then reads nothing more and never leaves.

    The app's next ``send`` waits for ever, as it does on a socket whose buffers are full. Like
    an ASGI server before spec 2.4, ``receive`` answers the request, then waits (no disconnect).
    """

    def __init__(self, app: FastAPI, user: User) -> None:
        """Start the request in a task of its own; ``stalled`` waits until the body has begun."""
        self.began = asyncio.Event()
        self.status = 0
        self.more_body = False
        self._never = asyncio.Event()
        self._asked = False
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/posts",
            "raw_path": b"/posts",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"test"),
                (b"authorization", user.auth["Authorization"].encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("test", 80),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._never.wait()
        raise AssertionError("unreachable")

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.more_body = message.get("more_body", False)
            self.began.set()
            await self._never.wait()  # the client reads nothing more

    async def stalled(self) -> None:
        """Wait until the app has sent the first piece of a streamed 200 and is stuck."""
        await asyncio.wait_for(self.began.wait(), 30)
        assert (self.status, self.more_body) == (200, True)

    async def leave(self) -> None:
        """The client goes away: the request's task is cancelled, as a server does."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_stalled_streams_hold_nothing_other_users_need(make_app: MakeApp) -> None:
    """One user's 4 streams that are never read; everyone else's requests are all answered.

    The pool is small (``DB_POOL_SIZE=2``: 4 connections on MySQL/PostgreSQL, as many as SQLite
    has for lists) and a wait for it short (1 s, then 503): a stream that kept a connection
    while its client reads nothing would make the others' reads and writes 503.
    """
    client = await make_app(posts_cache_max_entry_bytes=CAP, db_timeout_seconds=1, db_pool_size=2)
    hog = await sign_up(client)
    for i in range(12):
        await create(client, hog, f"{i:03d}" + "x" * 97)
    others = [await sign_up(client) for _ in range(4)]
    for other in others:
        await create(client, other, "first")
    stalled = [StalledReader(client.app, hog) for _ in range(4)]
    try:
        for reader in stalled:
            await reader.stalled()

        async def round_of(user: User, turn: int) -> None:
            new = await create(client, user, f"post {turn}")  # the list is a miss again
            page = await client.get("/posts?limit=1", headers=user.auth)  # a page miss
            assert page.status_code == 200, page.text
            listed = await client.get("/posts", headers=user.auth)  # a list miss
            assert listed.status_code == 200, listed.text
            assert listed.json()[-1]["post_id"] == new
            assert listed.json()[0] == page.json()[0]
            put = await client.put(f"/posts/post/{new}", json={"text": "e"}, headers=user.auth)
            assert put.status_code == 200, put.text
            got = await client.get(f"/posts/post/{new}", headers=user.auth)
            assert got.status_code == 200, got.text

        for turn in range(5):  # many requests at once, many rounds
            await asyncio.gather(*(round_of(user, turn) for user in others))
        streamed = await client.get("/posts", headers=hog.auth)  # the hog's own fifth stream
        assert [post["text"][:3] for post in streamed.json()] == [f"{i:03d}" for i in range(12)]
    finally:
        for reader in stalled:
            await reader.leave()
    assert client.app.state.list_engine.pool.checkedout() == 0


async def test_a_stream_closed_before_it_starts_holds_nothing(
    make_app: MakeApp, backend: str, base_settings: dict[str, Any]
) -> None:
    """A stream its response never began (the client left first) is closed unread: no connection
    kept out of the pool, no transaction left open on the server."""
    client = await make_app(posts_cache_max_entry_bytes=CAP)
    user = await sign_up(client)
    for _ in range(10):
        await create(client, user, "x" * 100)
    posts: PostService = client.app.state.posts
    streams = [await posts.list_posts(user_id=user.id, query=ListQuery()) for _ in range(3)]
    for stream in streams:
        assert isinstance(stream, Stream)
        await stream.chunks.aclose()  # type: ignore[attr-defined]
    assert client.app.state.list_engine.pool.checkedout() == 0
    if backend == "postgres":
        database = base_settings["database_url"].rsplit("/", 1)[1]
        open_transactions = pg_rows(
            database,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        assert open_transactions == [(0,)]
    assert (await client.get("/posts", headers=user.auth)).status_code == 200
