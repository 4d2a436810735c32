"""The body-size limit and the order of checks: 413, then 401, then 422."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import MakeApp, User

LIMIT = 1_048_576
JSON = {"content-type": "application/json"}


def body_of_size(n: int) -> bytes:
    """A JSON body ``{"text": "aaa..."}`` of exactly ``n`` bytes."""
    prefix, suffix = b'{"text":"', b'"}'
    return prefix + b"a" * (n - len(prefix) - len(suffix)) + suffix


async def chunked(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Stream ``body`` without a Content-Length (httpx then sends it chunked)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_body_at_the_limit_is_accepted(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post(
        "/posts/post", content=body_of_size(LIMIT), headers={**user.auth, **JSON}
    )
    assert resp.status_code == 201


async def test_one_byte_more_is_413(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post(
        "/posts/post", content=body_of_size(LIMIT + 1), headers={**user.auth, **JSON}
    )
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/json"
    assert "limit" in resp.json()["detail"]


async def test_chunked_upload_over_the_limit_is_413(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post(
        "/posts/post", content=chunked(body_of_size(LIMIT + 1)), headers={**user.auth, **JSON}
    )
    assert "content-length" not in resp.request.headers
    assert resp.status_code == 413
    assert "detail" in resp.json()


async def test_chunked_upload_at_the_limit_is_accepted(
    client: httpx.AsyncClient, user: User
) -> None:
    resp = await client.post(
        "/posts/post", content=chunked(body_of_size(LIMIT)), headers={**user.auth, **JSON}
    )
    assert resp.status_code == 201


async def test_small_chunks_are_counted_together(make_app: MakeApp) -> None:
    """Many small pieces, none large on its own, add up past the limit."""
    client = await make_app(max_body_bytes=100)
    resp = await client.post(
        "/auth/signup", content=chunked(b'{"email": "' + b"a" * 200 + b'"}', size=10), headers=JSON
    )
    assert resp.status_code == 413


@pytest.mark.parametrize("path", ["/auth/signup", "/auth/login"])
async def test_limit_holds_for_auth_too(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.post(path, content=body_of_size(LIMIT + 1), headers=JSON)
    assert resp.status_code == 413


async def test_limit_is_configurable(make_app: MakeApp) -> None:
    client = await make_app(max_body_bytes=1000)
    resp = await client.post("/auth/signup", content=body_of_size(1001), headers=JSON)
    assert resp.status_code == 413
    assert "1000" in resp.json()["detail"]


async def test_put_over_the_limit_is_413_and_changes_nothing(
    client: httpx.AsyncClient, user: User
) -> None:
    post_id = (await client.post("/posts/post", json={"text": "keep"}, headers=user.auth)).json()[
        "post_id"
    ]
    resp = await client.put(
        f"/posts/post/{post_id}", content=body_of_size(LIMIT + 1), headers={**user.auth, **JSON}
    )
    assert resp.status_code == 413
    assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()["text"] == "keep"


# order of checks ---------------------------------------------------------------------------------

BAD_TOKEN = {"Authorization": "Bearer not.a.token"}


async def test_oversized_beats_bad_token(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/posts/post", content=body_of_size(LIMIT + 1), headers={**BAD_TOKEN, **JSON}
    )
    assert resp.status_code == 413
    chunked_resp = await client.post(
        "/posts/post", content=chunked(body_of_size(LIMIT + 1)), headers={**BAD_TOKEN, **JSON}
    )
    assert chunked_resp.status_code == 413


@pytest.mark.parametrize(
    "content",
    [b'{"text": 5}', b'{"nope": 1}', b'{"text": ', b"not json", b""],
    ids=["wrong-type", "unknown-field", "truncated", "not-json", "empty"],
)
@pytest.mark.parametrize("token", [None, "Bearer not.a.token"], ids=["no-token", "bad-token"])
async def test_bad_token_beats_bad_body(
    client: httpx.AsyncClient, content: bytes, token: str | None
) -> None:
    headers = {**JSON, **({"Authorization": token} if token else {})}
    for method, path in (
        ("POST", "/posts/post"),
        ("PUT", "/posts/post/1"),
        ("PUT", "/posts/post/abc"),
    ):
        resp = await client.request(method, path, content=content, headers=headers)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.headers["www-authenticate"] == "Bearer"


async def test_good_token_bad_body_is_422(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post("/posts/post", content=b'{"text": ', headers={**user.auth, **JSON})
    assert resp.status_code == 422
