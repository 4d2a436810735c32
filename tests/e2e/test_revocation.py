"""Revocation that holds or is refused: an ended session is a 401 on every instance, after a
restart of the service, whatever Redis loses and whenever (a crash and a restart from an older
snapshot, a failover to a lagging replica, evicted keys), and a revocation answered on a host
cut off from Redis either holds on the others or is a 503 that changed nothing.

Two ``create_app`` instances on one database and one Redis are two hosts. Redis faults use a
``redis-server`` of the test's own (FLUSHALL and restarts never touch the shared server) or a
cuttable proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from posts_api.auth.repository import SessionRepository
from tests.proxy import Proxy
from tests.reliability.helpers import PrivateRedis, private_redis
from tests.support import (
    PASSWORD,
    REDIS_DB_APP,
    REDIS_HOST,
    REDIS_PORT,
    AppClient,
    MakeApp,
    User,
    new_email,
    sign_up,
    user_from,
)


async def me(client: httpx.AsyncClient, user: User) -> int:
    """The status of GET /auth/me with the user's token."""
    return (await client.get("/auth/me", headers=user.auth)).status_code


async def posts(client: httpx.AsyncClient, user: User) -> int:
    """The status of GET /posts with the user's token (the hot path's session check)."""
    return (await client.get("/posts", headers=user.auth)).status_code


async def wait_available(client: AppClient) -> None:
    """Wait until the app uses its cache again after an outage."""
    for _ in range(100):
        if client.app.state.cache.available:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the cache did not come back")


def shared_only(backend: str) -> None:
    """Several instances share state only with a server database and Redis."""
    if backend == "sqlite":
        pytest.skip("the in-process cache is one process's: several instances need Redis")


async def test_logout_is_seen_by_another_instance(make_app: MakeApp, backend: str) -> None:
    shared_only(backend)
    first, second = await make_app(), await make_app()
    user = await sign_up(first)
    assert await posts(first, user) == 200
    assert await posts(second, user) == 200  # both have seen the session live
    assert (await second.post("/auth/logout", headers=user.auth)).status_code == 204
    assert await posts(first, user) == 401
    assert await me(first, user) == 401


async def test_revocation_survives_a_restart(make_app: MakeApp) -> None:
    before = await make_app()
    user = await sign_up(before)
    assert await posts(before, user) == 200
    assert (await before.post("/auth/logout-all", headers=user.auth)).status_code == 204
    after = await make_app()  # a new process: empty memo, empty in-process cache
    assert await posts(after, user) == 401
    assert await me(after, user) == 401


@pytest.fixture
def own_redis(backend: str, tmp_path: Path) -> Any:
    """A redis-server of the test's own (server set-ups only)."""
    shared_only(backend)
    with private_redis(tmp_path) as server:
        yield server


async def test_revocation_survives_redis_losing_its_data(make_app: MakeApp, own_redis: Any) -> None:
    first, second = await make_app(cache_url=own_redis.url), await make_app(cache_url=own_redis.url)
    user = await sign_up(first)
    assert await posts(second, user) == 200
    assert (await first.post("/auth/logout", headers=user.auth)).status_code == 204
    own_redis.client().flushall()
    assert await posts(second, user) == 401  # a miss goes to the database
    own_redis.stop()
    own_redis.start()  # comes back empty
    for client in (first, second):
        for _ in range(3):  # through the outage, its detection and the new generation
            assert await posts(client, user) == 401
            await asyncio.sleep(0.05)
        await wait_available(client)
        assert await posts(client, user) == 401
        assert await me(client, user) == 401


async def test_revocation_while_redis_is_unreachable_holds_or_is_refused(
    make_app: MakeApp, backend: str
) -> None:
    """Cut the cache: the check goes to the database (fail closed), a logout that cannot tell
    the cache is a 503 that ended nothing, and once the cache is back the retried logout holds
    on every instance."""
    shared_only(backend)
    proxy = Proxy(REDIS_HOST, REDIS_PORT)
    await proxy.restore()
    try:
        url = f"redis://127.0.0.1:{proxy.port}/{REDIS_DB_APP}"
        first, second = await make_app(cache_url=url), await make_app(cache_url=url)
        user = await sign_up(first)
        other = await sign_up(first)
        for client in (first, second):
            assert await posts(client, user) == 200  # cached as live everywhere
        await proxy.cut()
        assert await posts(first, user) == 200  # served from the database
        refused = await first.post("/auth/logout", headers=user.auth)
        assert refused.status_code == 503, refused.text
        for client in (first, second):
            assert await posts(client, user) == 200  # nothing ended
            assert await posts(client, other) == 200
        await proxy.restore()
        for client in (first, second):
            await wait_available(client)
        assert (await first.post("/auth/logout", headers=user.auth)).status_code == 204
        for client in (first, second):
            assert await posts(client, user) == 401
            assert await me(client, user) == 401
            assert await posts(client, other) == 200
    finally:
        await proxy.cut()


async def test_a_refresh_token_that_is_not_live_is_a_401_while_redis_is_unreachable(
    make_app: MakeApp, backend: str
) -> None:
    """Only a reuse revokes, so only a reuse needs the cache: with Redis cut, a refresh token
    of an ended session is the usual 401 (no mark tried, no 503), while a reused one is a 503
    that revoked nothing, and a live one still refreshes."""
    shared_only(backend)
    proxy = Proxy(REDIS_HOST, REDIS_PORT)
    await proxy.restore()
    try:
        app = await make_app(cache_url=f"redis://127.0.0.1:{proxy.port}/{REDIS_DB_APP}")
        ended, live = await sign_up(app), await sign_up(app)
        assert (await app.post("/auth/logout", headers=ended.auth)).status_code == 204
        spent = live.refresh_token
        rotated = await app.post("/auth/refresh", json={"refresh_token": spent})
        assert rotated.status_code == 200
        await proxy.cut()
        stale = await app.post("/auth/refresh", json={"refresh_token": ended.refresh_token})
        assert (stale.status_code, stale.json()) == (401, {"detail": "Invalid refresh token"})
        reused = await app.post("/auth/refresh", json={"refresh_token": spent})
        assert reused.status_code == 503, reused.text
        fresh = rotated.json()["refresh_token"]
        assert (await app.post("/auth/refresh", json={"refresh_token": fresh})).status_code == 200
    finally:
        await proxy.cut()


# Redis loses data -------------------------------------------------------------------------------


async def two_hosts(make_app: MakeApp, redis: PrivateRedis) -> tuple[AppClient, AppClient]:
    """Two instances (two hosts) sharing ``redis``."""
    first, second = await make_app(cache_url=redis.url), await make_app(cache_url=redis.url)
    return first, second


def run(redis: PrivateRedis, *command: str) -> Any:
    """One command on ``redis``, as an administrator would type it."""
    client = redis.client()
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def lose_keys(redis: PrivateRedis, pattern: str) -> None:
    """Delete the keys matching ``pattern``, as an eviction of exactly those would."""
    client = redis.client()
    try:
        for key in list(client.scan_iter(match=pattern)):
            client.delete(key)
    finally:
        client.close()


async def test_a_logout_holds_when_redis_restarts_from_an_older_snapshot(
    make_app: MakeApp, own_redis: PrivateRedis
) -> None:
    """The session cached as live, SAVE, logout (204, then 401), then Redis crashes and comes
    back from that snapshot, with no request in between: the token stays a 401 everywhere."""
    first, second = await two_hosts(make_app, own_redis)
    user = await sign_up(first)
    assert await posts(second, user) == 200
    run(own_redis, "SAVE")
    assert (await first.post("/auth/logout", headers=user.auth)).status_code == 204
    assert await posts(second, user) == 401
    own_redis.kill()
    own_redis.start()  # loads dump.rdb: the session's state from before the logout
    for client in (second, first):
        assert await posts(client, user) == 401
        assert await me(client, user) == 401


async def test_a_logout_holds_after_a_failover_to_a_lagging_replica(
    make_app: MakeApp, own_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Another server takes the address with an older copy of the data (a replica that had
    not yet received the logout): the token stays a 401 everywhere."""
    first, second = await two_hosts(make_app, own_redis)
    user = await sign_up(first)
    assert await posts(second, user) == 200
    run(own_redis, "SAVE")
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    shutil.copy(tmp_path / "dump.rdb", replica_dir / "dump.rdb")
    assert (await first.post("/auth/logout", headers=user.auth)).status_code == 204
    own_redis.kill()
    replica = PrivateRedis(replica_dir, port=own_redis.port)
    replica.start()
    try:
        for client in (second, first):
            assert await posts(client, user) == 401
            assert await me(client, user) == 401
    finally:
        replica.stop()


@pytest.mark.parametrize("lost", ["posts-api:ver:*", "posts-api:*gen*", "*"])
async def test_a_logout_holds_when_redis_evicts_keys(
    make_app: MakeApp, own_redis: PrivateRedis, lost: str
) -> None:
    """Versions, the generation or everything evicted after a logout: the ended session's
    cached "live" state must never match again."""
    first, second = await two_hosts(make_app, own_redis)
    user = await sign_up(first)
    assert await posts(second, user) == 200
    assert (await first.post("/auth/logout", headers=user.auth)).status_code == 204
    lose_keys(own_redis, lost)
    for client in (second, first):
        assert await posts(client, user) == 401
        assert await me(client, user) == 401


# a host cut off from Redis ----------------------------------------------------------------------

Revoke = Callable[[httpx.AsyncClient, User], Awaitable[httpx.Response]]


async def _logout(client: httpx.AsyncClient, user: User) -> httpx.Response:
    return await client.post("/auth/logout", headers=user.auth)


async def _logout_all(client: httpx.AsyncClient, user: User) -> httpx.Response:
    return await client.post("/auth/logout-all", headers=user.auth)


async def _password(client: httpx.AsyncClient, user: User) -> httpx.Response:
    body = {"current_password": PASSWORD, "new_password": PASSWORD + "!"}
    return await client.put("/auth/password", json=body, headers=user.auth)


async def _delete_account(client: httpx.AsyncClient, user: User) -> httpx.Response:
    return await client.request(
        "DELETE", "/auth/me", json={"password": PASSWORD}, headers=user.auth
    )


REVOCATIONS: dict[str, Revoke] = {
    "logout": _logout,
    "logout-all": _logout_all,
    "password": _password,
    "delete account": _delete_account,
}


@pytest.mark.parametrize("revocation", list(REVOCATIONS))
async def test_a_revocation_on_a_host_cut_off_from_redis_holds_or_is_refused(
    make_app: MakeApp, own_redis: PrivateRedis, revocation: str
) -> None:
    """Host A reaches Redis through a cut connection, host B has the sessions cached as live.
    A revocation on A is a 503 that changed nothing, or it holds on B at once; retried once
    Redis is back, it answers and holds everywhere."""
    proxy = Proxy("127.0.0.1", own_redis.port)
    await proxy.restore()
    try:
        cut = await make_app(cache_url=f"redis://127.0.0.1:{proxy.port}/0")
        other = await make_app(cache_url=own_redis.url)
        user = await sign_up(other)
        login = {"email": user.email, "password": PASSWORD}
        second = user_from(user.email, (await other.post("/auth/login", json=login)).json())
        for client in (cut, other):
            for session in (user, second):
                assert await posts(client, session) == 200  # cached as live everywhere
        await proxy.cut()
        resp = await REVOCATIONS[revocation](cut, user)
        ended = [user] if revocation == "logout" else [user, second]
        if resp.status_code == 503:
            assert resp.json()["detail"]
            for session in (user, second):  # nothing changed
                assert await posts(other, session) == 200
                assert await me(other, session) == 200
            await proxy.restore()
            await wait_available(cut)
            resp = await REVOCATIONS[revocation](cut, user)
        assert resp.status_code in (200, 204), resp.text
        for client in (other, cut):
            for session in ended:
                assert await posts(client, session) == 401
                assert await me(client, session) == 401
        if revocation == "logout":
            assert await posts(other, second) == 200
    finally:
        await proxy.cut()


# cancelled between the database write and the cache ---------------------------------------------


async def test_a_logout_cancelled_after_its_database_write_leaves_nothing_stale(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request is cancelled (a client gone, a timeout) right after the session's UPDATE
    committed: the session is ended, so it must not stay cached as live anywhere."""
    client = await make_app()
    user = await sign_up(client)
    assert await posts(client, user) == 200  # cached as live
    written = asyncio.Event()
    real = SessionRepository.revoke

    async def revoke_then_stall(self: SessionRepository, **kwargs: Any) -> bool:
        done = await real(self, **kwargs)
        written.set()
        await asyncio.Event().wait()  # cancelled here, after the commit
        return done

    monkeypatch.setattr(SessionRepository, "revoke", revoke_then_stall)
    logout = asyncio.create_task(
        client.app.state.auth.log_out(user_id=user.id, session_id=user.sid)
    )
    await written.wait()
    logout.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await logout
    monkeypatch.undo()
    assert await posts(client, user) == 401
    assert await me(client, user) == 401


# a session that starts while another revocation runs --------------------------------------------


async def live_in_database(client: AppClient, user: User) -> bool:
    """Whether the database has the user's session as live (the truth)."""
    async with client.app.state.sessions() as session:
        owner = await SessionRepository(session).live_owner(session_id=user.sid)
    return owner == user.id


@pytest.mark.parametrize("start", ["login", "password"])
async def test_a_session_started_during_a_revocation_is_cached_as_the_database_has_it(
    make_app: MakeApp, backend: str, start: str
) -> None:
    """A login (or a password change, which starts a session) races a logout-all of the same
    user, many times: whichever order the database saw, every host answers the new session's
    token as the database has it (a new session is cached as live when it starts: that seed
    must never outlive a revocation that ended it)."""
    first = await make_app()
    second = await make_app() if backend != "sqlite" else first
    login = {"email": new_email(), "password": PASSWORD}
    assert (await first.post("/auth/signup", json=login)).status_code == 201
    mismatches = []
    for _ in range(15):
        revoker, starter = [
            user_from(login["email"], (await first.post("/auth/login", json=login)).json())
            for _ in range(2)
        ]
        if start == "login":
            starting = first.post("/auth/login", json=login)
        else:
            body = {"current_password": PASSWORD, "new_password": PASSWORD}
            starting = first.put("/auth/password", json=body, headers=starter.auth)
        started, ended = await asyncio.gather(
            starting, first.post("/auth/logout-all", headers=revoker.auth)
        )
        assert ended.status_code == 204
        assert started.status_code == 200, started.text
        new = user_from(login["email"], started.json())
        expected = 200 if await live_in_database(first, new) else 401
        for client in (second, first, second):
            if (status := await posts(client, new)) != expected:
                mismatches.append((expected, status))
    assert mismatches == []
