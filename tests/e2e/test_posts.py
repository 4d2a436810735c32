"""The posts endpoints: create, list, read, update, delete; ownership; ids; text round trips."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import pytest

from tests.support import User


async def create(client: httpx.AsyncClient, user: User, text: str = "hello") -> int:
    """Create a post and return its id."""
    resp = await client.post("/posts/post", json={"text": text}, headers=user.auth)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"post_id"}
    assert isinstance(body["post_id"], int)
    assert body["post_id"] > 0
    return int(body["post_id"])


def parse_utc(value: str) -> dt.datetime:
    """An ISO 8601 timestamp with an explicit UTC offset."""
    assert value.endswith(("Z", "+00:00")), value
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() == dt.timedelta(0)
    return parsed


def check_post(post: dict[str, object]) -> None:
    """A post has exactly the contract's keys and types."""
    assert set(post) == {"post_id", "text", "created_at", "updated_at"}
    assert isinstance(post["post_id"], int)
    assert isinstance(post["text"], str)
    for key in ("created_at", "updated_at"):
        value = post[key]
        assert isinstance(value, str)
        assert abs(parse_utc(value) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


async def test_new_user_has_no_posts(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.get("/posts", headers=user.auth)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == []


async def test_create_then_get(client: httpx.AsyncClient, user: User) -> None:
    post_id = await create(client, user, "read me")
    resp = await client.get(f"/posts/post/{post_id}", headers=user.auth)
    assert resp.status_code == 200
    post = resp.json()
    check_post(post)
    assert post["post_id"] == post_id
    assert post["text"] == "read me"
    assert post["created_at"] == post["updated_at"]


async def test_list_is_own_posts_oldest_first(
    client: httpx.AsyncClient, user: User, other_user: User
) -> None:
    ids = [await create(client, user, f"post {i}") for i in range(5)]
    await create(client, other_user, "not yours")
    posts = (await client.get("/posts", headers=user.auth)).json()
    for post in posts:
        check_post(post)
    assert [p["post_id"] for p in posts] == sorted(ids)
    assert [p["text"] for p in posts] == [f"post {i}" for i in range(5)]
    for post in posts:
        single = await client.get(f"/posts/post/{post['post_id']}", headers=user.auth)
        assert single.json() == post


async def test_update_changes_text_and_updated_at_only(
    client: httpx.AsyncClient, user: User
) -> None:
    post_id = await create(client, user, "before")
    before = (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()
    await asyncio.sleep(0.01)
    resp = await client.put(f"/posts/post/{post_id}", json={"text": "after"}, headers=user.auth)
    assert resp.status_code == 200
    updated = resp.json()
    check_post(updated)
    assert updated["text"] == "after"
    assert updated["post_id"] == post_id
    assert updated["created_at"] == before["created_at"]
    assert parse_utc(updated["updated_at"]) > parse_utc(before["updated_at"])
    assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json() == updated


async def test_update_with_the_same_text_succeeds(client: httpx.AsyncClient, user: User) -> None:
    post_id = await create(client, user, "same")
    resp = await client.put(f"/posts/post/{post_id}", json={"text": "same"}, headers=user.auth)
    assert resp.status_code == 200
    assert resp.json()["text"] == "same"


async def test_delete_is_204_and_the_post_is_gone(client: httpx.AsyncClient, user: User) -> None:
    keep = await create(client, user, "keep")
    doomed = await create(client, user, "doomed")
    resp = await client.delete(f"/posts/post/{doomed}", headers=user.auth)
    assert resp.status_code == 204
    assert resp.content == b""
    assert (await client.get(f"/posts/post/{doomed}", headers=user.auth)).status_code == 404
    put = await client.put(f"/posts/post/{doomed}", json={"text": "x"}, headers=user.auth)
    assert put.status_code == 404
    assert (await client.delete(f"/posts/post/{doomed}", headers=user.auth)).status_code == 404
    assert [p["post_id"] for p in (await client.get("/posts", headers=user.auth)).json()] == [keep]


async def test_ids_of_deleted_posts_are_not_reused(client: httpx.AsyncClient, user: User) -> None:
    doomed = await create(client, user, "doomed")
    assert (await client.delete(f"/posts/post/{doomed}", headers=user.auth)).status_code == 204
    assert await create(client, user, "new") > doomed


async def test_other_users_post_is_404_and_untouched(
    client: httpx.AsyncClient, user: User, other_user: User
) -> None:
    post_id = await create(client, user, "A's")
    gone = await create(client, other_user, "B's, deleted")
    await client.delete(f"/posts/post/{gone}", headers=other_user.auth)
    for method, body in (("GET", None), ("PUT", {"text": "B was here"}), ("DELETE", None)):
        foreign = await client.request(
            method, f"/posts/post/{post_id}", json=body, headers=other_user.auth
        )
        missing = await client.request(
            method, f"/posts/post/{gone}", json=body, headers=other_user.auth
        )
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json() == {"detail": "Post not found"}
    post = (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()
    assert post["text"] == "A's"


@pytest.mark.parametrize("post_id", ["abc", "1.5", "-1", "0", str(2**63), str(10**30), "1e3"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_bad_post_ids_are_422(
    client: httpx.AsyncClient, user: User, method: str, post_id: str
) -> None:
    body = {"text": "x"} if method == "PUT" else None
    resp = await client.request(method, f"/posts/post/{post_id}", json=body, headers=user.auth)
    assert resp.status_code == 422, resp.text


@pytest.mark.parametrize("post_id", [2**31, 2**63 - 1])
async def test_huge_but_valid_ids_are_404(
    client: httpx.AsyncClient, user: User, post_id: int
) -> None:
    for method, body in (("GET", None), ("PUT", {"text": "x"}), ("DELETE", None)):
        resp = await client.request(method, f"/posts/post/{post_id}", json=body, headers=user.auth)
        assert resp.status_code == 404, (method, resp.text)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": ""},
        {"text": 5},
        {"text": None},
        {"text": ["a"]},
        {"text": "a", "extra": 1},
        [],
        "x",
    ],
    ids=["empty", "empty-text", "int", "null", "list", "extra-field", "array", "string"],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_bad_post_bodies_are_422(
    client: httpx.AsyncClient, user: User, method: str, body: object
) -> None:
    post_id = await create(client, user)
    path = "/posts/post" if method == "POST" else f"/posts/post/{post_id}"
    resp = await client.request(method, path, json=body, headers=user.auth)
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], list)
    if method == "PUT":
        assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()[
            "text"
        ] == "hello"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"text": "x"', "application/json"),
        (b"text=x", "application/x-www-form-urlencoded"),
        (b'{"text": "x"}', "text/plain"),
        (b"", "application/json"),
    ],
    ids=["truncated-json", "form", "text-plain", "no-body"],
)
async def test_unparseable_bodies_are_422(
    client: httpx.AsyncClient, user: User, content: bytes, content_type: str
) -> None:
    resp = await client.post(
        "/posts/post", content=content, headers={**user.auth, "content-type": content_type}
    )
    assert resp.status_code == 422, resp.text


TEXTS = {
    "emoji": "😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵",
    "cjk": "漢字かなカタカナ한국어 𠀀𪚥",
    "rtl": "שלום — مرحبا \u200f‮x‬",
    "combining": "e\u0301 \u00e9 Z\u0351\u036b",
    "whitespace": "  lead\ttrail\r\n  ",
    "controls": "nul\u0000bell\u0007 bom\ufeff ls\u2028",
    "html-sql": "</script><b>x</b> '); DROP TABLE posts;-- 100% _x_",
}


@pytest.mark.parametrize("name", list(TEXTS))
async def test_text_round_trips_exactly(client: httpx.AsyncClient, user: User, name: str) -> None:
    text = TEXTS[name]
    post_id = await create(client, user, text)
    assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()["text"] == text
    assert (await client.get("/posts", headers=user.auth)).json()[0]["text"] == text
    resp = await client.put(f"/posts/post/{post_id}", json={"text": text + "!"}, headers=user.auth)
    assert resp.json()["text"] == text + "!"


async def test_escaped_json_is_the_same_text(client: httpx.AsyncClient, user: User) -> None:
    text = TEXTS["emoji"] + TEXTS["cjk"]
    resp = await client.post(
        "/posts/post",
        content=json.dumps({"text": text}).encode(),  # \ud83d\ude00 escapes
        headers={**user.auth, "content-type": "application/json"},
    )
    post_id = resp.json()["post_id"]
    assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()["text"] == text


async def test_lone_surrogate_is_422(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post(
        "/posts/post",
        content=b'{"text": "\\ud800"}',
        headers={**user.auth, "content-type": "application/json"},
    )
    assert resp.status_code == 422


async def test_a_full_mebibyte_post_round_trips(client: httpx.AsyncClient, user: User) -> None:
    """The largest body the limit admits, of 4-byte characters: it must fit the column."""
    prefix, suffix = b'{"text":"', b'"}'
    room = 1_048_576 - len(prefix) - len(suffix)
    text = "😀" * (room // 4) + "a" * (room % 4)
    body = prefix + text.encode() + suffix
    assert len(body) == 1_048_576
    resp = await client.post(
        "/posts/post", content=body, headers={**user.auth, "content-type": "application/json"}
    )
    assert resp.status_code == 201
    post_id = resp.json()["post_id"]
    assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()["text"] == text
    assert (await client.get("/posts", headers=user.auth)).json()[0]["text"] == text


async def test_update_answers_with_what_it_wrote(client: httpx.AsyncClient, user: User) -> None:
    """Racing updates: each 200 carries its own text, and the final text is one of them."""
    post_id = await create(client, user, "start")
    texts = [f"writer {i}" for i in range(6)]
    responses = await asyncio.gather(
        *(client.put(f"/posts/post/{post_id}", json={"text": t}, headers=user.auth) for t in texts)
    )
    assert [r.json()["text"] for r in responses] == texts
    final = (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()["text"]
    assert final in texts
