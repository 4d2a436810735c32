"""The cached list never hides an acknowledged write, whatever Redis loses and whenever (a crash
and a restart from an older snapshot, a failover to a lagging replica, evicted keys), and a
write answered on a host cut off from Redis shows on the others or is a 503 that changed
nothing. Also: a write cancelled between the database and the cache hides nothing.

Two ``create_app`` instances on one database and one private ``redis-server`` are two hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from posts_api.posts.repository import PostRepository
from posts_api.posts.schemas import PostIn
from tests.e2e.test_revocation import lose_keys, run, shared_only, wait_available
from tests.proxy import Proxy
from tests.reliability.helpers import PrivateRedis, private_redis
from tests.support import AppClient, MakeApp, User, sign_up


@pytest.fixture
def own_redis(backend: str, tmp_path: Path) -> Any:
    """A redis-server of the test's own (server set-ups only)."""
    shared_only(backend)
    with private_redis(tmp_path) as server:
        yield server


async def texts(client: httpx.AsyncClient, user: User) -> list[str]:
    """The user's posts as GET /posts lists them (from the cache when it holds them)."""
    resp = await client.get("/posts", headers=user.auth)
    assert resp.status_code == 200, resp.text
    return [post["text"] for post in resp.json()]


async def stored(client: AppClient, user: User) -> list[str]:
    """The user's posts as the database has them."""
    async with client.app.state.sessions() as session:
        rows = await session.execute(
            text("SELECT text FROM posts WHERE user_id = :user ORDER BY id"), {"user": user.id}
        )
        return [t.decode() if isinstance(t, bytes) else t for (t,) in rows]


async def create(client: httpx.AsyncClient, user: User, post: str) -> httpx.Response:
    """POST /posts/post."""
    return await client.post("/posts/post", json={"text": post}, headers=user.auth)


async def test_a_write_is_not_hidden_when_redis_restarts_from_an_older_snapshot(
    make_app: MakeApp, own_redis: PrivateRedis
) -> None:
    first, second = await make_app(cache_url=own_redis.url), await make_app(cache_url=own_redis.url)
    user = await sign_up(first)
    assert await texts(second, user) == []  # cached
    run(own_redis, "SAVE")
    assert (await create(first, user, "a")).status_code == 201
    own_redis.kill()
    own_redis.start()  # back from the snapshot, which holds the empty list
    for client in (second, first):
        assert await texts(client, user) == ["a"]


async def test_a_write_is_not_hidden_after_a_failover_to_a_lagging_replica(
    make_app: MakeApp, own_redis: PrivateRedis, tmp_path: Path
) -> None:
    first, second = await make_app(cache_url=own_redis.url), await make_app(cache_url=own_redis.url)
    user = await sign_up(first)
    assert await texts(second, user) == []
    run(own_redis, "SAVE")
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    shutil.copy(tmp_path / "dump.rdb", replica_dir / "dump.rdb")
    assert (await create(first, user, "a")).status_code == 201
    own_redis.kill()
    replica = PrivateRedis(replica_dir, port=own_redis.port)
    replica.start()
    try:
        for client in (second, first):
            assert await texts(client, user) == ["a"]
    finally:
        replica.stop()


@pytest.mark.parametrize("lost", ["posts-api:ver:*", "posts-api:*gen*", "*"])
async def test_a_write_is_not_hidden_when_redis_evicts_keys(
    make_app: MakeApp, own_redis: PrivateRedis, lost: str
) -> None:
    first, second = await make_app(cache_url=own_redis.url), await make_app(cache_url=own_redis.url)
    user = await sign_up(first)
    assert await texts(second, user) == []
    assert (await create(first, user, "a")).status_code == 201
    lose_keys(own_redis, lost)
    for client in (second, first):
        assert await texts(client, user) == ["a"]


@pytest.fixture
async def cut_host(
    make_app: MakeApp, own_redis: PrivateRedis
) -> AsyncIterator[tuple[AppClient, AppClient, Proxy]]:
    """Host A reaching ``own_redis`` through a cuttable proxy, host B directly."""
    proxy = Proxy("127.0.0.1", own_redis.port)
    await proxy.restore()
    try:
        cut = await make_app(cache_url=f"redis://127.0.0.1:{proxy.port}/0")
        other = await make_app(cache_url=own_redis.url)
        yield cut, other, proxy
    finally:
        await proxy.cut()


@pytest.mark.parametrize("write", ["create", "update", "delete"])
async def test_a_write_on_a_host_cut_off_from_redis_shows_elsewhere_or_is_refused(
    cut_host: tuple[AppClient, AppClient, Proxy], write: str
) -> None:
    """A write answered on host A, cut from Redis: B's very next GET /posts shows it. Or the
    answer is a 503 and nothing changed (a retry cannot duplicate a post); retried once Redis
    is back, it answers and shows everywhere."""
    cut, other, proxy = cut_host
    user = await sign_up(other)
    post_id = (await create(other, user, "a")).json()["post_id"]
    for client in (cut, other):
        assert await texts(client, user) == ["a"]  # cached
    await proxy.cut()

    async def send() -> httpx.Response:
        if write == "create":
            return await create(cut, user, "b")
        if write == "update":
            return await cut.put(f"/posts/post/{post_id}", json={"text": "b"}, headers=user.auth)
        return await cut.delete(f"/posts/post/{post_id}", headers=user.auth)

    after = {"create": ["a", "b"], "update": ["b"], "delete": []}[write]
    resp = await send()
    if resp.status_code == 503:
        assert resp.json()["detail"]
        assert await stored(other, user) == ["a"]  # nothing changed
        assert await texts(other, user) == ["a"]
        assert await texts(cut, user) == ["a"]  # reads are still answered, from the database
        await proxy.restore()
        await wait_available(cut)
        resp = await send()
    assert resp.status_code in (200, 201, 204), resp.text
    assert await texts(other, user) == after
    assert await texts(cut, user) == after
    assert await stored(other, user) == after


async def test_a_create_cancelled_after_its_database_write_hides_nothing(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request is cancelled right after the INSERT committed: the post exists, so the
    user's next GET /posts must show it."""
    client = await make_app()
    user = await sign_up(client)
    assert await texts(client, user) == []  # cached
    written = asyncio.Event()
    real = PostRepository.add

    async def add_then_stall(self: PostRepository, **kwargs: Any) -> int:
        post_id = await real(self, **kwargs)
        written.set()
        await asyncio.Event().wait()  # cancelled here, after the commit
        return post_id

    monkeypatch.setattr(PostRepository, "add", add_then_stall)
    posts = client.app.state.posts
    creating = asyncio.create_task(posts.create_post(user_id=user.id, post=PostIn(text="a")))
    await written.wait()
    creating.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await creating
    monkeypatch.undo()
    assert await texts(client, user) == ["a"]
