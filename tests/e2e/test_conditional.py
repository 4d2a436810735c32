"""Conditional requests (RFC 9110): ETag, If-None-Match -> 304, If-Match -> 412."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.e2e.test_posts import create
from tests.support import StatementLog, User

PRIVATE = {"cache-control": "private, no-cache", "vary": "Authorization"}


def check_tagged(resp: httpx.Response) -> str:
    """A 200 or 304 with a strong tag and the private caching headers; returns the tag."""
    etag = resp.headers["etag"]
    assert etag[0] == etag[-1] == '"', etag
    for name, value in PRIVATE.items():
        assert resp.headers[name] == value
    return etag


@pytest.mark.parametrize("path", ["/posts", "/posts?limit=1", "/posts/post/{id}"])
async def test_if_none_match_gives_a_bare_304(
    client: httpx.AsyncClient, app: FastAPI, user: User, path: str, statements: StatementLog
) -> None:
    post_id = await create(client, user, "tagged")
    url = path.format(id=post_id)
    first = await client.get(url, headers=user.auth)
    assert first.status_code == 200
    etag = check_tagged(first)
    variants = [etag, f"W/{etag}", f'"nope", {etag}', f'W/"x" ,W/{etag}', "*"]
    for header in variants:
        resp = await client.get(url, headers=user.auth | {"If-None-Match": header})
        assert resp.status_code == 304, header
        assert resp.content == b""
        assert check_tagged(resp) == etag
    if path == "/posts":  # a 304 from the cached list: no database call
        with statements.watching(app) as sent:
            resp = await client.get(url, headers=user.auth | {"If-None-Match": etag})
        assert resp.status_code == 304
        assert sent == []
    for header in ['"other"', 'W/"other"', "", "garbage", etag[:-1]]:
        resp = await client.get(url, headers=user.auth | {"If-None-Match": header})
        assert resp.status_code == 200, header
        assert resp.content == first.content


@pytest.mark.parametrize("path", ["/posts", "/posts?limit=5", "/posts/post/{id}"])
async def test_a_write_changes_the_tag(client: httpx.AsyncClient, user: User, path: str) -> None:
    post_id = await create(client, user, "before")
    url = path.format(id=post_id)
    etag = check_tagged(await client.get(url, headers=user.auth))
    await client.put(f"/posts/post/{post_id}", json={"text": "after"}, headers=user.auth)
    resp = await client.get(url, headers=user.auth | {"If-None-Match": etag})
    assert resp.status_code == 200
    assert check_tagged(resp) != etag


async def test_another_users_tag_never_matches(
    client: httpx.AsyncClient, user: User, other_user: User
) -> None:
    empty = await client.get("/posts", headers=user.auth)
    theirs = await client.get("/posts", headers=other_user.auth)
    assert empty.content == theirs.content == b"[]"
    assert empty.headers["etag"] != theirs.headers["etag"]
    stolen = {"If-None-Match": theirs.headers["etag"]}
    assert (await client.get("/posts", headers=user.auth | stolen)).status_code == 200


async def test_put_with_if_match(client: httpx.AsyncClient, user: User) -> None:
    post_id = await create(client, user, "v1")
    url = f"/posts/post/{post_id}"
    v1 = check_tagged(await client.get(url, headers=user.auth))
    ok = await client.put(url, json={"text": "v2"}, headers=user.auth | {"If-Match": v1})
    assert ok.status_code == 200, ok.text
    v2 = ok.headers["etag"]
    assert v2 != v1
    assert v2 == (await client.get(url, headers=user.auth)).headers["etag"]
    for stale in [v1, f'"a", {v1}', f"W/{v2}", '"p1.0"', "garbage"]:
        resp = await client.put(url, json={"text": "lost"}, headers=user.auth | {"If-Match": stale})
        assert resp.status_code == 412, stale
        assert set(resp.json()) == {"detail"}
    assert (await client.get(url, headers=user.auth)).json()["text"] == "v2"
    listed = await client.put(
        url, json={"text": "v3"}, headers=user.auth | {"If-Match": f'"x", {v2}'}
    )
    assert listed.status_code == 200
    star = await client.put(url, json={"text": "v4"}, headers=user.auth | {"If-Match": "*"})
    assert star.status_code == 200
    assert (await client.get("/posts", headers=user.auth)).json()[0]["text"] == "v4"


async def test_delete_with_if_match(client: httpx.AsyncClient, user: User) -> None:
    post_id = await create(client, user, "v1")
    url = f"/posts/post/{post_id}"
    v1 = check_tagged(await client.get(url, headers=user.auth))
    await client.put(url, json={"text": "v2"}, headers=user.auth)
    stale = await client.delete(url, headers=user.auth | {"If-Match": v1})
    assert stale.status_code == 412
    assert (await client.get(url, headers=user.auth)).status_code == 200
    weak = await client.delete(url, headers=user.auth | {"If-Match": "W/" + v1})
    assert weak.status_code == 412
    v2 = (await client.get(url, headers=user.auth)).headers["etag"]
    assert (await client.delete(url, headers=user.auth | {"If-Match": v2})).status_code == 204
    assert (await client.delete(url, headers=user.auth | {"If-Match": "*"})).status_code == 404


async def test_if_match_on_a_missing_or_foreign_post_is_404(
    client: httpx.AsyncClient, user: User, other_user: User
) -> None:
    theirs = await create(client, other_user, "theirs")
    url = f"/posts/post/{theirs}"
    their_tag = (await client.get(url, headers=other_user.auth)).headers["etag"]
    for header in [their_tag, "*", '"x"']:
        put = await client.put(url, json={"text": "x"}, headers=user.auth | {"If-Match": header})
        assert put.status_code == 404
        assert (
            await client.delete(url, headers=user.auth | {"If-Match": header})
        ).status_code == 404
    assert (await client.get(url, headers=other_user.auth)).json()["text"] == "theirs"
    missing = await client.delete("/posts/post/999999999", headers=user.auth | {"If-Match": "*"})
    assert missing.status_code == 404
