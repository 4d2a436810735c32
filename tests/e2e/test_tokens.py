"""Bearer tokens: every way a token can be wrong is a 401 with ``WWW-Authenticate: Bearer``."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import jwt
import pytest

from tests.support import SECRET, User, claims


def b64(data: dict[str, Any]) -> str:
    """Base64url of a JSON object, unpadded, as in a JWT."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(user: User) -> dict[str, str]:
    """Tokens that must all be refused, by name."""
    sub = str(user.id)
    header, payload, signature = user.token.split(".")
    other = claims(sub="999999")
    return {
        "tampered-payload": f"{header}.{b64(other)}.{signature}",
        "tampered-signature": f"{header}.{payload}.{signature[:-2]}AA",
        "alg-none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(sub))}.",
        "alg-none-upper": f"{b64({'alg': 'NONE', 'typ': 'JWT'})}.{b64(claims(sub))}.",
        "hs512": jwt.encode(claims(sub), SECRET, algorithm="HS512"),
        "hs384": jwt.encode(claims(sub), SECRET, algorithm="HS384"),
        "wrong-key": jwt.encode(
            claims(sub), "another key entirely, " + "long enough for HMAC-SHA256", algorithm="HS256"
        ),
        "expired": jwt.encode(claims(sub, lifetime=-10), SECRET, algorithm="HS256"),
        "no-exp": jwt.encode(claims(sub, changes={"exp": None}), SECRET, algorithm="HS256"),
        "no-iat": jwt.encode(claims(sub, changes={"iat": None}), SECRET, algorithm="HS256"),
        "no-jti": jwt.encode(claims(sub, changes={"jti": None}), SECRET, algorithm="HS256"),
        "no-sub": jwt.encode(claims(sub, changes={"sub": None}), SECRET, algorithm="HS256"),
        "sub-not-a-number": jwt.encode(claims("alice"), SECRET, algorithm="HS256"),
        "sub-zero": jwt.encode(claims("0"), SECRET, algorithm="HS256"),
        "sub-negative": jwt.encode(claims("-1"), SECRET, algorithm="HS256"),
        "sub-huge": jwt.encode(claims("9" * 40), SECRET, algorithm="HS256"),
        "sub-int": jwt.encode(claims(sub, changes={"sub": user.id}), SECRET, algorithm="HS256"),
        "kid-header": jwt.encode(claims(sub), SECRET, algorithm="HS256", headers={"kid": "1"}),
        "oversized": jwt.encode(
            claims(sub, changes={"pad": "x" * 10_000}), SECRET, algorithm="HS256"
        ),
        "not-a-jwt": "hello",
        "two-parts": f"{header}.{payload}",
        "garbage-base64": "###.###.###",
    }


TOKEN_CASES = list(bad_tokens(User("x@example.com", "a.b.c", 1)))


async def assert_bearer_401(resp: httpx.Response) -> None:
    """The response is the contract's 401."""
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json() == {"detail": "Not authenticated"}


@pytest.mark.parametrize("case", TOKEN_CASES)
async def test_bad_token_is_401(client: httpx.AsyncClient, user: User, case: str) -> None:
    token = bad_tokens(user)[case]
    resp = await client.get("/posts", headers={"Authorization": f"Bearer {token}"})
    await assert_bearer_401(resp)


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a b"],
    ids=["missing", "empty", "scheme-only", "scheme-space", "basic", "other-scheme", "two-words"],
)
async def test_missing_or_malformed_header_is_401(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    await assert_bearer_401(await client.get("/posts", headers=headers))


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_scheme_name_is_case_insensitive(
    client: httpx.AsyncClient, user: User, scheme: str
) -> None:
    resp = await client.get("/posts", headers={"Authorization": f"{scheme} {user.token}"})
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/posts"),
        ("POST", "/posts/post"),
        ("GET", "/posts/post/1"),
        ("PUT", "/posts/post/1"),
        ("DELETE", "/posts/post/1"),
    ],
)
async def test_every_posts_endpoint_needs_a_token(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    resp = await client.request(
        method, path, json={"text": "x"} if method in ("POST", "PUT") else None
    )
    await assert_bearer_401(resp)


async def test_valid_token_of_a_deleted_user(client: httpx.AsyncClient, app: Any) -> None:
    """The token still verifies, but the user is gone: 401 on create, nothing to see elsewhere."""
    from sqlalchemy import text

    from tests.support import sign_up

    user = await sign_up(client)
    post_id = (await client.post("/posts/post", json={"text": "mine"}, headers=user.auth)).json()[
        "post_id"
    ]
    assert (await client.get("/posts", headers=user.auth)).status_code == 200  # cache it
    async with app.state.engine.connect() as conn:
        await conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    resp = await client.post("/posts/post", json={"text": "ghost"}, headers=user.auth)
    await assert_bearer_401_with_detail(resp)
    assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).status_code == 404
    assert (
        await client.put(f"/posts/post/{post_id}", json={"text": "x"}, headers=user.auth)
    ).status_code == 404
    assert (await client.delete(f"/posts/post/{post_id}", headers=user.auth)).status_code == 404
    assert (await client.get("/posts", headers=user.auth)).json() == []


async def assert_bearer_401_with_detail(resp: httpx.Response) -> None:
    """A 401 with the bearer challenge and some detail."""
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"
    assert "detail" in resp.json()
