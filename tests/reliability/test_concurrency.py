"""Concurrency on real servers: racing sign-ups, racing writes to one post, many writers, hosts.

The module's deployment is ``posts-api serve --workers 2`` on MariaDB and Redis, then on
PostgreSQL and Redis, as in production; requests go out concurrently on fresh connections, so
both workers serve them. The last test adds a second, separate ``serve --workers 2`` instance on
the same database and Redis: two hosts behind a load balancer, as a client alternating between
them sees them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.reliability.helpers import (
    NO_KEEPALIVE,
    REDIS_DB_MODULE,
    REQUEST_TIMEOUT,
    Stack,
    database_stack,
    serving,
)
from tests.support import PASSWORD, Server, User, new_email, sign_up

MAX_FAILURES_PER_EMAIL = 3


@dataclass(frozen=True)
class Host:
    """The module's deployment: its stack, its server, and where to start another host."""

    stack: Stack
    server: Server
    workdir: Path


def host_env(stack: Stack) -> dict[str, str]:
    """The environment every host of the deployment runs with: a small log-in throttle."""
    return stack.env(LOGIN_MAX_FAILURES_PER_EMAIL=str(MAX_FAILURES_PER_EMAIL))


@pytest.fixture(scope="module", params=["mysql", "postgres"])
def host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Host]:
    """Two workers on a fresh MariaDB (then PostgreSQL) database and Redis."""
    workdir = tmp_path_factory.mktemp("concurrency")
    with (
        database_stack(request.param, REDIS_DB_MODULE) as stack,
        serving(workdir, host_env(stack), workers=2) as server,
    ):
        yield Host(stack, server, workdir)


@pytest.fixture
async def http(host: Host) -> AsyncIterator[httpx.AsyncClient]:
    """A client opening a fresh connection per request, so both workers answer."""
    async with httpx.AsyncClient(
        base_url=host.server.url, timeout=REQUEST_TIMEOUT, limits=NO_KEEPALIVE
    ) as client:
        yield client


async def test_racing_signups_of_one_email(http: httpx.AsyncClient) -> None:
    """Twelve sign-ups of one address (three spellings of it) at once: one 201, eleven 409."""
    email = new_email("race")
    spellings = [email, email.upper(), email.capitalize()]
    answers = await asyncio.gather(
        *(
            http.post("/auth/signup", json={"email": spellings[i % 3], "password": PASSWORD})
            for i in range(12)
        )
    )
    assert sorted(a.status_code for a in answers) == [201] + [409] * 11
    login = await http.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200


async def test_racing_wrong_passwords_are_checked_at_most_the_limit(
    http: httpx.AsyncClient,
) -> None:
    """Twenty wrong passwords for one email at once, on both workers: the limit of them are
    checked (401), the rest are 429 with ``Retry-After`` before any check."""
    user = await sign_up(http)
    wrong = {"email": user.email, "password": "wrong password!"}
    answers = await asyncio.gather(*(http.post("/auth/login", json=wrong) for _ in range(20)))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: MAX_FAILURES_PER_EMAIL, 429: 20 - MAX_FAILURES_PER_EMAIL}, statuses
    assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 429)


async def test_racing_updates_and_deletes_of_one_post(http: httpx.AsyncClient) -> None:
    """Updates and deletes of one post at once, updates of another: no 5xx, one delete wins,
    every answer tells the truth, and the list agrees with the posts afterwards."""
    user = await sign_up(http)
    doomed = (await http.post("/posts/post", json={"text": "a"}, headers=user.auth)).json()
    kept = (await http.post("/posts/post", json={"text": "b"}, headers=user.auth)).json()
    doomed_url, kept_url = (f"/posts/post/{p['post_id']}" for p in (doomed, kept))

    async def put(url: str, text: str) -> tuple[str, httpx.Response]:
        return text, await http.put(url, json={"text": text}, headers=user.auth)

    updates = [put(doomed_url, f"a{i}") for i in range(16)]
    updates += [put(kept_url, f"b{i}") for i in range(16)]
    deletes = [http.delete(doomed_url, headers=user.auth) for _ in range(4)]
    lists = [http.get("/posts", headers=user.auth) for _ in range(8)]
    put_results, delete_answers, list_answers = await asyncio.gather(
        asyncio.gather(*updates), asyncio.gather(*deletes), asyncio.gather(*lists)
    )

    assert Counter(a.status_code for a in delete_answers) == {204: 1, 404: 3}
    assert {a.status_code for a in list_answers} == {200}
    for text, answer in put_results:
        assert answer.status_code in ((200, 404) if text.startswith("a") else (200,)), answer.text
        if answer.status_code == 200:
            assert answer.json()["text"] == text, "an update answered with someone else's text"

    assert (await http.get(doomed_url, headers=user.auth)).status_code == 404
    assert (await http.put(doomed_url, json={"text": "x"}, headers=user.auth)).status_code == 404
    final = (await http.get(kept_url, headers=user.auth)).json()
    assert final["text"] in {f"b{i}" for i in range(16)}
    for _ in range(3):  # a miss, then hits: neither may be stale
        listed = (await http.get("/posts", headers=user.auth)).json()
        assert listed == [final]


async def test_many_users_writing_at_once(http: httpx.AsyncClient) -> None:
    """Twenty users, eight posts each, all at once, reading their lists meanwhile: each ends with
    exactly their own posts, in order."""
    users = await asyncio.gather(*(sign_up(http) for _ in range(20)))

    async def write(user: User, n: int) -> list[int]:
        ids = []
        for i in range(n):
            resp = await http.post(
                "/posts/post", json={"text": f"{user.id}:{i}"}, headers=user.auth
            )
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["post_id"])
            listed = await http.get("/posts", headers=user.auth)
            assert [p["post_id"] for p in listed.json()] == ids  # own writes seen at once
        return ids

    written = await asyncio.gather(*(write(user, 8) for user in users))
    for user, ids in zip(users, written, strict=True):
        listed = (await http.get("/posts", headers=user.auth)).json()
        assert [(p["post_id"], p["text"]) for p in listed] == [
            (post_id, f"{user.id}:{i}") for i, post_id in enumerate(ids)
        ]


async def test_two_hosts_share_one_truth(host: Host, http: httpx.AsyncClient) -> None:
    """A second ``serve --workers 2`` on the same database and Redis: whatever is written on one
    host is read on the other at once, a logout on one ends the session on both, and the
    log-in throttle counts on both."""
    with serving(host.workdir, host_env(host.stack), workers=2) as other:
        async with httpx.AsyncClient(
            base_url=other.url, timeout=REQUEST_TIMEOUT, limits=NO_KEEPALIVE
        ) as http_b:
            hosts = (http, http_b)
            user = await sign_up(http_b)
            expected: dict[int, str] = {}
            for i in range(12):
                writer, reader = hosts[i % 2], hosts[(i + 1) % 2]
                if i % 4 == 3:  # update the oldest
                    oldest = min(expected)
                    resp = await writer.put(
                        f"/posts/post/{oldest}", json={"text": f"u{i}"}, headers=user.auth
                    )
                    assert resp.status_code == 200
                    expected[oldest] = f"u{i}"
                elif i % 4 == 2:  # delete the newest
                    newest = max(expected)
                    resp = await writer.delete(f"/posts/post/{newest}", headers=user.auth)
                    assert resp.status_code == 204
                    del expected[newest]
                else:
                    resp = await writer.post(
                        "/posts/post", json={"text": f"p{i}"}, headers=user.auth
                    )
                    assert resp.status_code == 201
                    expected[resp.json()["post_id"]] = f"p{i}"
                listed = (await reader.get("/posts", headers=user.auth)).json()
                assert {p["post_id"]: p["text"] for p in listed} == expected, f"step {i}"

            # Revocation: a logout on one host is a 401 on every worker of both at once.
            for client in hosts:
                for _ in range(4):  # both workers of each host see the session live
                    assert (await client.get("/posts", headers=user.auth)).status_code == 200
            assert (await http.post("/auth/logout", headers=user.auth)).status_code == 204
            for client in hosts:
                for _ in range(4):
                    assert (await client.get("/posts", headers=user.auth)).status_code == 401

            # The throttle: failures on either host count for both.
            victim = await sign_up(http)
            wrong = {"email": victim.email, "password": "wrong password!"}
            for i in range(MAX_FAILURES_PER_EMAIL):
                assert (await hosts[i % 2].post("/auth/login", json=wrong)).status_code == 401
            right = {"email": victim.email, "password": PASSWORD}
            for client in hosts:
                for _ in range(2):  # both workers of each host
                    resp = await client.post("/auth/login", json=right)
                    assert resp.status_code == 429, resp.text
                    assert int(resp.headers["retry-after"]) > 0
