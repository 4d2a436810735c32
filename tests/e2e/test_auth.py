"""POST /auth/signup and /auth/login: status codes, bodies, tokens, emails, throttling."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import jwt
import pytest

from tests.support import PASSWORD, SECRET, MakeApp, User, new_email, sign_up


def check_token_body(body: dict[str, object]) -> dict[str, object]:
    """The token body has exactly the contract's keys, and the token is ours."""
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    }
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_expires_in"] == 30 * 86400
    refresh = body["refresh_token"]
    assert isinstance(refresh, str)
    assert 0 < len(refresh) <= 512
    token = body["access_token"]
    assert isinstance(token, str)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded: dict[str, object] = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert set(decoded) == {"sub", "iat", "exp", "jti", "sid"}
    assert isinstance(decoded["sid"], str)
    assert isinstance(decoded["sub"], str)
    assert decoded["sub"].isdigit()
    assert decoded["exp"] == decoded["iat"] + 3600  # type: ignore[operator]
    assert abs(decoded["iat"] - time.time()) < 60  # type: ignore[operator]
    return decoded


async def test_signup_returns_201_and_a_token(client: httpx.AsyncClient) -> None:
    resp = await client.post("/auth/signup", json={"email": new_email(), "password": PASSWORD})
    assert resp.status_code == 201
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["cache-control"] == "no-store"
    check_token_body(resp.json())


async def test_login_returns_200_and_a_token_for_the_same_user(
    client: httpx.AsyncClient, user: User
) -> None:
    resp = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    claims = check_token_body(resp.json())
    assert claims["sub"] == str(user.id)


async def test_every_token_has_its_own_jti(client: httpx.AsyncClient, user: User) -> None:
    body = {"email": user.email, "password": PASSWORD}
    tokens = [
        (await client.post("/auth/login", json=body)).json()["access_token"] for _ in range(2)
    ]
    jtis = {jwt.decode(t, SECRET, algorithms=["HS256"])["jti"] for t in [user.token, *tokens]}
    assert len(jtis) == 3


async def test_emails_are_case_insensitive(client: httpx.AsyncClient) -> None:
    local = new_email().split("@")[0]
    created = await sign_up(client, f"Ann.{local}@Example.COM")
    login = await client.post(
        "/auth/login", json={"email": f"ann.{local}@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200
    sub = jwt.decode(login.json()["access_token"], options={"verify_signature": False})["sub"]
    assert int(sub) == created.id
    for variant in (f"ANN.{local.upper()}@EXAMPLE.COM", f"ann.{local}@example.com"):
        resp = await client.post("/auth/signup", json={"email": variant, "password": PASSWORD})
        assert resp.status_code == 409, variant
        assert resp.json() == {"detail": "Email already registered"}


async def test_duplicate_signup_is_409(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post(
        "/auth/signup", json={"email": user.email, "password": "another one 1"}
    )
    assert resp.status_code == 409
    assert resp.json() == {"detail": "Email already registered"}


async def test_concurrent_duplicate_signups_one_wins(client: httpx.AsyncClient) -> None:
    email = new_email("race")
    body = {"email": email, "password": PASSWORD}
    responses = await asyncio.gather(*(client.post("/auth/signup", json=body) for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7


async def test_wrong_password_and_unknown_email_give_the_same_401(
    client: httpx.AsyncClient, user: User
) -> None:
    wrong = await client.post("/auth/login", json={"email": user.email, "password": "not it 123"})
    unknown = await client.post("/auth/login", json={"email": new_email(), "password": PASSWORD})
    for resp in (wrong, unknown):
        assert resp.status_code == 401
        assert resp.json() == {"detail": "Invalid email or password"}
        assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@" + "b" * 250 + ".com", "password": PASSWORD},  # over 254 characters
        {"email": "", "password": PASSWORD},
        {"email": new_email(), "password": "short"},
        {"email": new_email(), "password": "x" * 129},
        {"email": new_email(), "password": "\ud800 lone surrogate"},
        {"email": new_email()},
        {"password": PASSWORD},
        {"email": new_email(), "password": PASSWORD, "admin": True},
        {"email": new_email(), "password": 12345678},
        {"email": ["a@example.com"], "password": PASSWORD},
    ],
    ids=[
        "bad-email",
        "long-email",
        "empty-email",
        "short-password",
        "long-password",
        "lone-surrogate",
        "no-password",
        "no-email",
        "unknown-field",
        "password-not-a-string",
        "email-not-a-string",
    ],
)
@pytest.mark.parametrize("path", ["/auth/signup", "/auth/login"])
async def test_invalid_credentials_body_is_422(
    client: httpx.AsyncClient, path: str, body: dict[str, object]
) -> None:
    # json.dumps escapes non-ASCII, so a lone surrogate travels as the JSON text "\ud800".
    content = json.dumps(body).encode()
    resp = await client.post(path, content=content, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], list)


async def test_password_bounds_are_inclusive(client: httpx.AsyncClient) -> None:
    for password in ("x" * 8, "é" * 128):
        resp = await client.post("/auth/signup", json={"email": new_email(), "password": password})
        assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("password", ["hunter2", "p" * 200])
async def test_422_never_echoes_the_password(client: httpx.AsyncClient, password: str) -> None:
    resp = await client.post("/auth/signup", json={"email": "bad", "password": password})
    assert resp.status_code == 422
    assert password not in resp.text


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/auth/signup", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["type"] == "json_invalid"


async def test_login_throttled_per_email(make_app: MakeApp) -> None:
    client = await make_app(login_max_failures_per_email=3, login_failure_window_seconds=120)
    user = await sign_up(client)
    wrong = {"email": user.email, "password": "wrong password"}
    for _ in range(3):
        assert (await client.post("/auth/login", json=wrong)).status_code == 401
    for body in (wrong, {"email": user.email, "password": PASSWORD}):
        resp = await client.post("/auth/login", json=body)
        assert resp.status_code == 429, "even the right password waits out the window"
        assert "detail" in resp.json()
        assert 0 < int(resp.headers["retry-after"]) <= 120
    other = await sign_up(client)
    resp = await client.post("/auth/login", json={"email": other.email, "password": PASSWORD})
    assert resp.status_code == 200, "another email is not throttled"


async def test_login_success_clears_the_email_count(make_app: MakeApp) -> None:
    client = await make_app(login_max_failures_per_email=3)
    user = await sign_up(client)
    wrong = {"email": user.email, "password": "wrong password"}
    right = {"email": user.email, "password": PASSWORD}
    for _ in range(2):
        assert (await client.post("/auth/login", json=wrong)).status_code == 401
    assert (await client.post("/auth/login", json=right)).status_code == 200
    for _ in range(2):
        assert (await client.post("/auth/login", json=wrong)).status_code == 401
    assert (await client.post("/auth/login", json=right)).status_code == 200


async def test_login_throttled_per_address(make_app: MakeApp) -> None:
    client = await make_app(login_max_failures_per_address=4, login_max_failures_per_email=100)
    for _ in range(4):
        body = {"email": new_email(), "password": "wrong password"}
        assert (await client.post("/auth/login", json=body)).status_code == 401
    user = await sign_up(client)
    resp = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0


async def test_test_domains_are_accepted_other_special_use_refused(
    client: httpx.AsyncClient,
) -> None:
    ok = await client.post(
        "/auth/signup", json={"email": new_email().replace(".com", ".test"), "password": PASSWORD}
    )
    assert ok.status_code == 201
    for email in ("a@localhost", "a@b.invalid", "a@[127.0.0.1]"):
        resp = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        assert resp.status_code == 422, email
