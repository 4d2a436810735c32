"""Logins racing the changes that end them (a password change, an account deletion), and
password changes racing each other.

A login checks a password it read before the change, then starts a session: however the two
interleave, once the change has answered no login yields a working token with the old password
(or for the deleted account), and no request of the race answers a 5xx. Raced for real: logins
with the old password go out one after another while the change runs (and a few after it
answered), many rounds, on each database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.e2e.test_sessions import NEW_PASSWORD, assert_token_dead
from tests.support import PASSWORD, AppClient, MakeApp, User, sign_up, user_from

ROUNDS = 8
LOGINS_DURING = 40  # at most, while the change runs (more would only queue for the pool)
LOGINS_AFTER = 4  # logins still sent once the change has answered
# High limits: the logins that lose the race are failed logins, and must not turn into 429s
# (a 429 yields no token either, but it would hide the race).
NO_THROTTLE = {"login_max_failures_per_email": 100_000, "login_max_failures_per_address": 100_000}

Change = Callable[[httpx.AsyncClient, User], Awaitable[httpx.Response]]


async def change_password(client: httpx.AsyncClient, user: User) -> httpx.Response:
    """PUT /auth/password, from the old password to ``NEW_PASSWORD``."""
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    return await client.put("/auth/password", json=body, headers=user.auth)


async def delete_account(client: httpx.AsyncClient, user: User) -> httpx.Response:
    """DELETE /auth/me."""
    return await client.request(
        "DELETE", "/auth/me", json={"password": PASSWORD}, headers=user.auth
    )


async def race(client: AppClient, change: Change, expected: int) -> list[httpx.Response]:
    """One round: a fresh user, old-password logins, and the change started once the first of
    them is answered, the logins going on all along it (so some land before, on a loaded
    machine too, and the rest race it).

    Returns the logins' answers; checks the change's.
    """
    user = await sign_up(client)
    login = {"email": user.email, "password": PASSWORD}
    first = asyncio.ensure_future(client.post("/auth/login", json=login))
    logins: list[asyncio.Future[httpx.Response]] = [first]
    while not first.done():  # once logins are being answered, the change starts among them
        if len(logins) < LOGINS_DURING // 2:
            logins.append(asyncio.ensure_future(client.post("/auth/login", json=login)))
        await asyncio.sleep(0.002)
    changing = asyncio.ensure_future(change(client, user))
    after = 0
    while after < LOGINS_AFTER:
        if len(logins) < LOGINS_DURING or changing.done():
            logins.append(asyncio.ensure_future(client.post("/auth/login", json=login)))
        await asyncio.sleep(0.002)  # the client's pace; the server has no sleep in it
        if changing.done():
            after += 1
    answer = await changing
    assert answer.status_code == expected, answer.text
    return list(await asyncio.gather(*logins))


async def assert_no_working_token(
    client: httpx.AsyncClient, answers: list[httpx.Response]
) -> set[int]:
    """No 5xx; each 200's tokens are dead now (the change has answered). Return the statuses."""
    statuses = [a.status_code for a in answers]
    assert all(s in (200, 401) for s in statuses), statuses
    for answer in answers:
        if answer.status_code == 200:
            await assert_token_dead(client, user_from("-", answer.json()))
    return set(statuses)


@pytest.mark.parametrize(
    ("change", "expected"),
    [(change_password, 200), (delete_account, 204)],
    ids=["password change", "account deletion"],
)
async def test_a_login_racing_a_change_never_yields_a_working_token(
    make_app: MakeApp, change: Change, expected: int
) -> None:
    client = await make_app(**NO_THROTTLE)
    seen: set[int] = set()
    for _ in range(ROUNDS):
        seen |= await assert_no_working_token(client, await race(client, change, expected))
    assert seen == {200, 401}, "the logins did not straddle the change: the race was not run"


async def test_racing_password_changes_one_wins(make_app: MakeApp) -> None:
    """Changes confirmed with one old password, at once: the first to commit wins; the others
    confirmed a password that is no longer the account's, so they change nothing (401, as
    their session has ended, or 403 if they read the new hash), and only the winner's new
    password and session work."""
    client = await make_app(**NO_THROTTLE)
    for _ in range(ROUNDS // 2):
        user = await sign_up(client)
        answers = await asyncio.gather(
            *(
                client.put(
                    "/auth/password",
                    json={"current_password": PASSWORD, "new_password": f"{NEW_PASSWORD} {i}"},
                    headers=user.auth,
                )
                for i in range(6)
            )
        )
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == 1, statuses
        assert set(statuses) <= {200, 401, 403}, statuses
        winner = statuses.index(200)
        fresh = user_from(user.email, answers[winner].json())
        assert (await client.get("/auth/me", headers=fresh.auth)).status_code == 200
        for i in range(6):
            login = {"email": user.email, "password": f"{NEW_PASSWORD} {i}"}
            resp = await client.post("/auth/login", json=login)
            assert resp.status_code == (200 if i == winner else 401), (i, winner)
