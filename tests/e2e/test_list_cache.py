"""GET /posts is cached per user; every write by that user shows in their very next list."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.support import MakeApp, StatementLog, User


async def list_texts(client: httpx.AsyncClient, user: User) -> list[str]:
    """The texts of the user's posts, via GET /posts."""
    resp = await client.get("/posts", headers=user.auth)
    assert resp.status_code == 200
    return [p["text"] for p in resp.json()]


async def test_a_hit_makes_no_database_call(
    client: httpx.AsyncClient, app: FastAPI, user: User, statements: StatementLog
) -> None:
    await client.post("/posts/post", json={"text": "one"}, headers=user.auth)
    first = await client.get("/posts", headers=user.auth)
    with statements.watching(app) as sent:
        second = await client.get("/posts", headers=user.auth)
    assert sent == []
    assert second.content == first.content


async def test_every_write_shows_in_the_next_list(client: httpx.AsyncClient, user: User) -> None:
    assert await list_texts(client, user) == []
    post_id = (await client.post("/posts/post", json={"text": "a"}, headers=user.auth)).json()[
        "post_id"
    ]
    assert await list_texts(client, user) == ["a"]
    await client.put(f"/posts/post/{post_id}", json={"text": "b"}, headers=user.auth)
    assert await list_texts(client, user) == ["b"]
    await client.delete(f"/posts/post/{post_id}", headers=user.auth)
    assert await list_texts(client, user) == []


async def test_a_write_keeps_other_users_entries(
    client: httpx.AsyncClient, app: FastAPI, user: User, other_user: User, statements: StatementLog
) -> None:
    await client.post("/posts/post", json={"text": "B's"}, headers=other_user.auth)
    await list_texts(client, other_user)  # cached
    post_id = (await client.post("/posts/post", json={"text": "A's"}, headers=user.auth)).json()[
        "post_id"
    ]
    await client.put(f"/posts/post/{post_id}", json={"text": "A2"}, headers=user.auth)
    await client.delete(f"/posts/post/{post_id}", headers=user.auth)
    with statements.watching(app) as sent:
        assert await list_texts(client, other_user) == ["B's"]
    assert sent == [], "A's writes flushed B's cached list"


async def test_failed_writes_keep_the_entry(
    client: httpx.AsyncClient, app: FastAPI, user: User, other_user: User, statements: StatementLog
) -> None:
    foreign = (
        await client.post("/posts/post", json={"text": "B's"}, headers=other_user.auth)
    ).json()["post_id"]
    await list_texts(client, user)
    await client.put(f"/posts/post/{foreign}", json={"text": "x"}, headers=user.auth)  # 404
    await client.delete(f"/posts/post/{foreign}", headers=user.auth)  # 404
    with statements.watching(app) as sent:
        await list_texts(client, user)
    assert sent == []


async def test_entries_expire_after_the_ttl(make_app: MakeApp) -> None:
    """With a 1-second TTL, a list cached then changed behind the app's back is re-read."""
    import asyncio

    from sqlalchemy import text

    from tests.support import sign_up

    client = await make_app(posts_cache_ttl_seconds=1)
    user = await sign_up(client)
    post_id = (await client.post("/posts/post", json={"text": "old"}, headers=user.auth)).json()[
        "post_id"
    ]
    assert await list_texts(client, user) == ["old"]
    app = client.app
    async with app.state.engine.connect() as conn:
        await conn.execute(text("UPDATE posts SET text = 'new' WHERE id = :id"), {"id": post_id})
    assert await list_texts(client, user) == ["old"]  # still cached
    await asyncio.sleep(1.2)
    assert await list_texts(client, user) == ["new"]
