"""The login throttle under concurrency and while the shared cache is unreachable.

However many wrong passwords for one email (or from one address) arrive at once, on however
many instances, no more than the limit of them are checked in a window: the rest are 429 with
``Retry-After``, before any password check. The password confirmations of PUT /auth/password
and DELETE /auth/me count as log-ins. While Redis is unreachable each process counts on its
own: the limit becomes at most (processes x the limit), never none.

Two ``create_app`` instances on one database and one Redis are two hosts (server set-ups); on
SQLite with ``mem://`` there is one.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.test_revocation import wait_available
from tests.proxy import Proxy
from tests.support import (
    PASSWORD,
    REDIS_DB_APP,
    AppClient,
    MakeApp,
    User,
    new_email,
    sign_up,
)

LIMIT = 3
AT_ONCE = 20
WRONG = "not the password"


async def instances(make_app: MakeApp, backend: str, **settings: object) -> list[AppClient]:
    """Two instances sharing the database and Redis; one on SQLite with ``mem://``."""
    count = 1 if backend == "sqlite" else 2
    return [await make_app(**settings) for _ in range(count)]


def spread(clients: list[AppClient], n: int) -> list[AppClient]:
    """``n`` clients, taking the instances in turn."""
    return [clients[i % len(clients)] for i in range(n)]


def assert_checked_at_most(answers: list[httpx.Response], checked: int, limit: int) -> None:
    """At most ``limit`` answers are ``checked`` (a password check's status), the rest 429s."""
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {checked, 429}, statuses
    assert statuses[checked] <= limit, statuses
    assert statuses[429] >= len(answers) - limit, statuses
    for answer in answers:
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) >= 1


async def login(client: httpx.AsyncClient, email: str, password: str = WRONG) -> httpx.Response:
    """POST /auth/login."""
    return await client.post("/auth/login", json={"email": email, "password": password})


async def test_concurrent_wrong_passwords_per_email(make_app: MakeApp, backend: str) -> None:
    clients = await instances(make_app, backend, login_max_failures_per_email=LIMIT)
    for _ in range(3):
        user = await sign_up(clients[0])
        answers = await asyncio.gather(*(login(c, user.email) for c in spread(clients, AT_ONCE)))
        assert_checked_at_most(answers, 401, LIMIT)
        assert [a.status_code for a in answers].count(401) == LIMIT  # the limit, no fewer
        assert (await login(clients[-1], user.email, PASSWORD)).status_code == 429


@pytest.fixture
async def one_address(make_app: MakeApp, backend: str) -> AsyncIterator[list[AppClient]]:
    """Clients of each instance, all at one (new) client address, its limit ``LIMIT``."""
    apps = await instances(
        make_app, backend, login_max_failures_per_address=LIMIT, login_max_failures_per_email=100
    )
    address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    clients = [AppClient(a.app, address) for a in apps]
    yield clients
    for client in clients:
        await client.aclose()


async def test_concurrent_wrong_passwords_per_address(one_address: list[AppClient]) -> None:
    answers = await asyncio.gather(*(login(c, new_email()) for c in spread(one_address, AT_ONCE)))
    assert_checked_at_most(answers, 401, LIMIT)


async def test_successful_logins_do_not_count_for_the_address(
    one_address: list[AppClient],
) -> None:
    """Each attempt is counted first; a success takes its count back (only failures count)."""
    user = await sign_up(one_address[0])
    for client in spread(one_address, 2 * LIMIT):
        assert (await login(client, user.email, PASSWORD)).status_code == 200
    for _ in range(LIMIT):
        assert (await login(one_address[0], new_email())).status_code == 401
    assert (await login(one_address[-1], user.email, PASSWORD)).status_code == 429


async def confirm(client: httpx.AsyncClient, user: User, i: int) -> httpx.Response:
    """A wrong password at PUT /auth/password (even ``i``) or DELETE /auth/me (odd)."""
    if i % 2:
        body = {"password": WRONG}
        return await client.request("DELETE", "/auth/me", json=body, headers=user.auth)
    body = {"current_password": WRONG, "new_password": "a new passphrase"}
    return await client.put("/auth/password", json=body, headers=user.auth)


async def test_concurrent_wrong_password_confirmations(make_app: MakeApp, backend: str) -> None:
    clients = await instances(make_app, backend, login_max_failures_per_email=LIMIT)
    user = await sign_up(clients[0])
    answers = await asyncio.gather(
        *(confirm(c, user, i) for i, c in enumerate(spread(clients, AT_ONCE)))
    )
    assert_checked_at_most(answers, 403, LIMIT)
    assert (await login(clients[0], user.email, PASSWORD)).status_code == 429


@pytest.fixture
async def cut_cache(redis_proxy: Proxy, make_app: MakeApp) -> AsyncIterator[list[AppClient]]:
    """Two instances whose Redis (through ``redis_proxy``) is then cut; restored at the end."""
    url = f"redis://127.0.0.1:{redis_proxy.port}/{REDIS_DB_APP}"
    clients = [await make_app(cache_url=url, login_max_failures_per_email=LIMIT) for _ in range(2)]
    await redis_proxy.cut()
    yield clients
    await redis_proxy.restore()
    for client in clients:
        await wait_available(client)


async def test_the_throttle_holds_while_the_cache_is_unreachable(
    cut_cache: list[AppClient],
) -> None:
    """Each process counts on its own meanwhile: past the limit on each, 429."""
    first, second = cut_cache
    user = await sign_up(first)
    for _ in range(LIMIT):
        assert (await login(first, user.email)).status_code == 401
    resp = await login(first, user.email, PASSWORD)
    assert resp.status_code == 429, "the right password too, as with the shared count"
    assert int(resp.headers["retry-after"]) >= 1
    # All at once, on both: at most the limit on each process.
    other = await sign_up(first)
    answers = await asyncio.gather(*(login(c, other.email) for c in spread(cut_cache, AT_ONCE)))
    assert_checked_at_most(answers, 401, 2 * LIMIT)
    assert (await login(second, other.email, PASSWORD)).status_code == 429
