"""The Auth section's sessions: refresh rotation and reuse, logout, logout-all, /auth/me,
password change and account deletion, each with its errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import httpx
import jwt
import pytest
import time_machine

from tests.e2e.test_auth import check_token_body
from tests.support import PASSWORD, SECRET, MakeApp, User, claims, new_email, sign_up, user_from

NEW_PASSWORD = "a brand new passphrase"


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """POST /auth/refresh with ``token``."""
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def log_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> User:
    """A new session of an existing account."""
    resp = await client.post("/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return user_from(email, resp.json())


async def assert_401(resp: httpx.Response, detail: str | None = None) -> None:
    """The contract's 401 (with its detail when given)."""
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"
    if detail is not None:
        assert resp.json() == {"detail": detail}


async def assert_token_dead(client: httpx.AsyncClient, user: User) -> None:
    """The user's access token is a 401 on protected endpoints, its refresh token too."""
    await assert_401(await client.get("/posts", headers=user.auth))
    await assert_401(await client.get("/auth/me", headers=user.auth))
    await assert_401(await client.post("/posts/post", json={"text": "x"}, headers=user.auth))
    await assert_401(await refresh(client, user.refresh_token), "Invalid refresh token")


async def assert_token_alive(client: httpx.AsyncClient, user: User) -> None:
    """The user's access token works."""
    resp = await client.get("/auth/me", headers=user.auth)
    assert resp.status_code == 200, resp.text


def sid_of(token: str) -> str:
    """The ``sid`` claim of an access token."""
    return str(jwt.decode(token, SECRET, algorithms=["HS256"])["sid"])


# refresh ------------------------------------------------------------------------------------


async def test_refresh_rotates_within_the_same_session(
    client: httpx.AsyncClient, user: User
) -> None:
    resp = await refresh(client, user.refresh_token)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    check_token_body(body)
    assert body["refresh_token"] != user.refresh_token
    assert sid_of(body["access_token"]) == sid_of(user.token)
    renewed = user_from(user.email, body)
    await assert_token_alive(client, renewed)
    await assert_token_alive(client, user)  # earlier access tokens stay valid until exp
    again = await refresh(client, renewed.refresh_token)  # the new one works, once
    assert again.status_code == 200


async def test_reuse_of_a_spent_refresh_token_revokes_the_session(
    client: httpx.AsyncClient, user: User
) -> None:
    other_session = await log_in(client, user.email)
    renewed = user_from(user.email, (await refresh(client, user.refresh_token)).json())
    await assert_401(await refresh(client, user.refresh_token), "Invalid refresh token")
    # The whole session is gone: the replacement refresh token and every access token of it.
    await assert_token_dead(client, renewed)
    await assert_token_dead(client, user)
    await assert_token_alive(client, other_session)  # other sessions are not touched


async def test_racing_refreshes_exactly_one_wins(client: httpx.AsyncClient, user: User) -> None:
    answers = await asyncio.gather(*(refresh(client, user.refresh_token) for _ in range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [401] * 19
    # The losers presented a spent token: reuse, so the session ends (strict RFC 9700 reading).
    (winner,) = (a for a in answers if a.status_code == 200)
    await assert_token_dead(client, user_from(user.email, winner.json()))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        "1.2.3.4",
        "a" * 100_000,
        "1." + "0" * 32 + ".0.AAAA",
        "..." * 200,
    ],
)
async def test_anything_but_a_live_refresh_token_is_the_same_401(
    client: httpx.AsyncClient, token: str
) -> None:
    await assert_401(await refresh(client, token), "Invalid refresh token")


async def test_a_refresh_token_signed_with_another_key_is_refused(
    client: httpx.AsyncClient, user: User
) -> None:
    from posts_api.core.security import RefreshCodec

    uid, sid = user.id, user.sid
    forged = RefreshCodec("another key, long enough " * 3).issue(
        user_id=uid, session_id=sid, counter=0
    )
    await assert_401(await refresh(client, forged), "Invalid refresh token")
    await assert_token_alive(client, user)  # a forgery is not reuse: nothing is revoked


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": 1}, {"refresh_token": None}, {"refresh_token": "x", "extra": 1}, []],
)
async def test_a_malformed_refresh_body_is_422(client: httpx.AsyncClient, body: Any) -> None:
    resp = await client.post("/auth/refresh", json=body)
    assert resp.status_code == 422


async def test_each_refresh_token_lives_its_own_lifetime(
    client: httpx.AsyncClient, user: User
) -> None:
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start + dt.timedelta(days=20)):
        body = (await refresh(client, user.refresh_token)).json()
    with time_machine.travel(start + dt.timedelta(days=40)):
        resp = await refresh(client, body["refresh_token"])  # 20 days after its own issue
        assert resp.status_code == 200, resp.text
        latest = resp.json()["refresh_token"]
    with time_machine.travel(start + dt.timedelta(days=71)):
        await assert_401(await refresh(client, latest), "Invalid refresh token")


async def test_refresh_tokens_are_absent_from_logs(
    client: httpx.AsyncClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        renewed = (await refresh(client, user.refresh_token)).json()
        await refresh(client, user.refresh_token)  # reuse: logged as a warning
        await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    assert caplog.records
    for token in (user.refresh_token, renewed["refresh_token"], renewed["access_token"]):
        assert token not in caplog.text
        assert token.rsplit(".", 1)[-1] not in caplog.text  # nor its MAC / signature
    assert PASSWORD not in caplog.text


# logout, logout-all, me ---------------------------------------------------------------------


async def test_logout_ends_only_the_callers_session(client: httpx.AsyncClient, user: User) -> None:
    second = await log_in(client, user.email)
    await assert_token_alive(client, user)  # cached as live first
    resp = await client.post("/auth/logout", headers=user.auth)
    assert resp.status_code == 204
    assert resp.content == b""
    await assert_token_dead(client, user)
    await assert_token_alive(client, second)
    assert (await refresh(client, second.refresh_token)).status_code == 200
    await assert_401(await client.post("/auth/logout", headers=user.auth))


async def test_logout_all_ends_every_session(client: httpx.AsyncClient, user: User) -> None:
    sessions = [user, *[await log_in(client, user.email) for _ in range(3)]]
    for session in sessions:
        await assert_token_alive(client, session)
    other = await sign_up(client)
    resp = await client.post("/auth/logout-all", headers=sessions[1].auth)
    assert resp.status_code == 204
    for session in sessions:
        await assert_token_dead(client, session)
    await assert_token_alive(client, other)
    await assert_token_alive(client, await log_in(client, user.email))  # log in again: fine


async def test_me_returns_the_account_as_stored(client: httpx.AsyncClient) -> None:
    local = new_email().split("@")[0]
    user = await sign_up(client, f"Ann.{local}@Example.COM")
    resp = await client.get("/auth/me", headers=user.auth)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"user_id", "email", "created_at"}
    assert body["user_id"] == user.id == int(jwt.decode(user.token, SECRET, ["HS256"])["sub"])
    assert body["email"] == f"ann.{local}@example.com"
    created = dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 60


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/logout"),
        ("POST", "/auth/logout-all"),
        ("GET", "/auth/me"),
        ("PUT", "/auth/password"),
        ("DELETE", "/auth/me"),
    ],
)
async def test_account_endpoints_need_a_token(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    await assert_401(await client.request(method, path))
    await assert_401(await client.request(method, path, headers={"Authorization": "Bearer x"}))


# tokens without a live session ----------------------------------------------------------------


async def test_a_token_without_sid_is_refused(client: httpx.AsyncClient, user: User) -> None:
    """A 1.0 token (no ``sid``), even signed with the real key, is a 401."""
    token = jwt.encode(claims(str(user.id), changes={"sid": None}), SECRET, algorithm="HS256")
    await assert_401(await client.get("/posts", headers={"Authorization": f"Bearer {token}"}))


async def test_a_token_naming_another_users_session_is_refused(
    client: httpx.AsyncClient, user: User, other_user: User
) -> None:
    """Real key, live sid, another ``sub``: the session is not that user's."""
    await assert_token_alive(client, other_user)  # its session is cached as live
    token = jwt.encode(
        claims(str(user.id), changes={"sid": other_user.sid}), SECRET, algorithm="HS256"
    )
    await assert_401(await client.get("/posts", headers={"Authorization": f"Bearer {token}"}))


async def test_a_revoked_token_with_a_bad_body_is_401_not_422(
    client: httpx.AsyncClient, user: User
) -> None:
    """Order of checks: 401 before 422, the session check included."""
    assert (await client.post("/auth/logout", headers=user.auth)).status_code == 204
    for body in (b"{", b'{"text": 1}'):
        headers = user.auth | {"Content-Type": "application/json"}
        await assert_401(await client.post("/posts/post", content=body, headers=headers))
        await assert_401(await client.put("/auth/password", content=body, headers=headers))


# password change ----------------------------------------------------------------------------


async def change_password(
    client: httpx.AsyncClient, user: User, current: str = PASSWORD, new: str = NEW_PASSWORD
) -> httpx.Response:
    """PUT /auth/password."""
    body = {"current_password": current, "new_password": new}
    return await client.put("/auth/password", json=body, headers=user.auth)


async def test_password_change_ends_every_session_and_starts_one(
    client: httpx.AsyncClient, user: User
) -> None:
    second = await log_in(client, user.email)
    await assert_token_alive(client, second)
    resp = await change_password(client, user)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    fresh = user_from(user.email, resp.json())
    assert fresh.sid not in (user.sid, second.sid)
    await assert_token_dead(client, user)
    await assert_token_dead(client, second)
    await assert_token_alive(client, fresh)
    assert (await refresh(client, fresh.refresh_token)).status_code == 200
    old = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    await assert_401(old, "Invalid email or password")
    await log_in(client, user.email, NEW_PASSWORD)


async def test_wrong_current_password_is_403(client: httpx.AsyncClient, user: User) -> None:
    resp = await change_password(client, user, current="not the password")
    assert resp.status_code == 403
    assert resp.json() == {"detail": "Invalid password"}
    await assert_token_alive(client, user)  # nothing changed
    await log_in(client, user.email)


@pytest.mark.parametrize(
    "body",
    [
        {"current_password": PASSWORD, "new_password": "short"},
        {"current_password": PASSWORD, "new_password": "x" * 129},
        {"current_password": PASSWORD},
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "extra": 1},
        {"current_password": 12345678, "new_password": NEW_PASSWORD},
    ],
)
async def test_a_malformed_password_change_is_422(
    client: httpx.AsyncClient, user: User, body: dict[str, Any]
) -> None:
    resp = await client.put("/auth/password", json=body, headers=user.auth)
    assert resp.status_code == 422
    assert PASSWORD not in resp.text
    assert NEW_PASSWORD not in resp.text


async def test_wrong_passwords_count_as_failed_logins(make_app: MakeApp) -> None:
    """Past the email's limit, password change, deletion and login answer 429 first."""
    client = await make_app(login_max_failures_per_email=2)
    user = await sign_up(client)
    for _ in range(2):
        assert (await change_password(client, user, current="wrong password")).status_code == 403
    for resp in (
        await change_password(client, user),  # even the right password: 429 before checking
        await client.request("DELETE", "/auth/me", json={"password": PASSWORD}, headers=user.auth),
        await client.post("/auth/login", json={"email": user.email, "password": PASSWORD}),
    ):
        assert resp.status_code == 429, resp.text
        assert int(resp.headers["retry-after"]) >= 1
    # 422 comes before 429.
    bad = {"current_password": PASSWORD, "new_password": "short"}
    assert (await client.put("/auth/password", json=bad, headers=user.auth)).status_code == 422


async def test_a_right_password_clears_the_email_count(make_app: MakeApp) -> None:
    client = await make_app(login_max_failures_per_email=2)
    user = await sign_up(client)
    assert (await change_password(client, user, current="wrong password")).status_code == 403
    resp = await change_password(client, user, current=PASSWORD, new=PASSWORD)
    assert resp.status_code == 200
    fresh = user_from(user.email, resp.json())
    assert (await change_password(client, fresh, current="wrong password")).status_code == 403
    assert (await change_password(client, fresh, current=PASSWORD)).status_code == 200


async def test_failed_password_checks_count_for_the_address(make_app: MakeApp) -> None:
    client = await make_app(login_max_failures_per_address=2)
    first, second = await sign_up(client), await sign_up(client)
    assert (await change_password(client, first, current="wrong password")).status_code == 403
    assert (await change_password(client, second, current="wrong password")).status_code == 403
    resp = await client.post("/auth/login", json={"email": first.email, "password": PASSWORD})
    assert resp.status_code == 429


# account deletion ---------------------------------------------------------------------------


async def delete_account(
    client: httpx.AsyncClient, user: User, password: str = PASSWORD
) -> httpx.Response:
    """DELETE /auth/me."""
    return await client.request(
        "DELETE", "/auth/me", json={"password": password}, headers=user.auth
    )


async def test_deleting_the_account_removes_everything(
    client: httpx.AsyncClient, user: User
) -> None:
    second = await log_in(client, user.email)
    await client.post("/posts/post", json={"text": "mine"}, headers=user.auth)
    assert len((await client.get("/posts", headers=user.auth)).json()) == 1  # cached
    resp = await delete_account(client, user)
    assert resp.status_code == 204
    assert resp.content == b""
    await assert_token_dead(client, user)
    await assert_token_dead(client, second)
    gone = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    await assert_401(gone, "Invalid email or password")
    again = await sign_up(client, user.email)  # the email is free again: a new account
    assert again.id != user.id
    assert (await client.get("/posts", headers=again.auth)).json() == []


async def test_deletion_with_a_wrong_password_is_403(client: httpx.AsyncClient, user: User) -> None:
    resp = await delete_account(client, user, "not the password")
    assert resp.status_code == 403
    assert resp.json() == {"detail": "Invalid password"}
    await assert_token_alive(client, user)


@pytest.mark.parametrize("body", [{}, {"password": 1}, {"password": PASSWORD, "x": 1}, None])
async def test_a_malformed_deletion_is_422(
    client: httpx.AsyncClient, user: User, body: Any
) -> None:
    resp = await client.request("DELETE", "/auth/me", json=body, headers=user.auth)
    assert resp.status_code == 422
    assert PASSWORD not in resp.text
    await assert_token_alive(client, user)
