"""Faults with real processes: the cache goes away, the database drops us, the server dies.

* Redis stopped, then restarted empty, and Redis frozen (SIGSTOP) then thawed with its data:
  reads keep succeeding from the database, writes are 503s that change nothing (they could not
  be made to show on every host), and the cache is used again with no restart, without hiding
  a write.
* MariaDB and PostgreSQL connections killed under load (``KILL``, ``pg_terminate_backend``, as
  an admin would): every request gets an answer within a bounded time, a 2xx or a JSON 503,
  and the service recovers by itself.
* ``kill -9`` of the server in the middle of a write load, on SQLite, MariaDB and PostgreSQL:
  after a restart every acknowledged write is there and no row is half-written.
* SIGTERM: requests in flight complete, and the process exits cleanly.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.helpers import (
    NO_KEEPALIVE,
    REQUEST_TIMEOUT,
    UNAVAILABLE,
    BackgroundProxy,
    PrivateRedis,
    background_proxy,
    crash,
    database_stack,
    private_redis,
    read_log,
    serving,
    sqlite_env,
    wait_until_read,
)
from tests.support import (
    PASSWORD,
    SECRET,
    Server,
    User,
    cli_env,
    create_mysql_database,
    drop_mysql_database,
    mysql_url,
    pg_rows,
    sign_up,
)

STOPPED = (0, -15)  # uvicorn exits 0, or re-raises SIGTERM once shut down: both are clean


# the cache away -----------------------------------------------------------------------------------


def _texts(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [post["text"] for post in resp.json()]


def _calls(redis_server: PrivateRedis) -> Counter[str]:
    """How many times Redis has run each command so far."""
    client = redis_server.client()
    try:
        stats: dict[str, dict[str, Any]] = client.info("commandstats")
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})


async def _cache_serves_again(http: httpx.AsyncClient, user: User, redis: PrivateRedis) -> None:
    """Wait until every worker answers GET /posts from Redis again.

    A read that uses the cache sends one MGET, and a hit sends nothing else: nine reads must
    make nine MGETs and no SET (a SET would be a miss refilling the entry).
    """
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await http.get("/posts", headers=user.auth)  # a miss fills the entry
        before = _calls(redis)
        for _ in range(9):
            assert (await http.get("/posts", headers=user.auth)).status_code == 200
        after = _calls(redis)
        if (after["mget"] - before["mget"], after["set"] - before["set"]) == (9, 0):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the cache was not used again after Redis came back")


@pytest.fixture
def mariadb_database() -> Iterator[str]:
    """A fresh MariaDB database of the test's own, dropped afterwards."""
    name = create_mysql_database()
    yield name
    drop_mysql_database(name)


async def test_redis_stopped_frozen_cut_and_back(tmp_path: Path, mariadb_database: str) -> None:
    """Three cache faults in turn on a two-worker server, which is never restarted.

    Stopped (then restarted empty), frozen (SIGSTOP: connections hang), and cut off with its
    data kept (a cuttable proxy drops every connection): reads and logins keep succeeding from
    the database, writes are refused with a 503 that changes nothing, the cache is used again
    once it is back, and the write retried then is not hidden.
    """
    with (
        private_redis(tmp_path) as redis,
        background_proxy("127.0.0.1", redis.port) as proxy,
    ):
        env = cli_env(
            DATABASE_URL=mysql_url(mariadb_database),
            CACHE_URL=f"redis://127.0.0.1:{proxy.port}/0",
            SECRET_KEY=SECRET,
        )
        with serving(tmp_path, env, workers=2) as server:
            async with httpx.AsyncClient(
                base_url=server.url, timeout=REQUEST_TIMEOUT, limits=NO_KEEPALIVE
            ) as http:
                await _cache_faults(http, redis, proxy)
            assert server.stop() in STOPPED


async def _cache_faults(
    http: httpx.AsyncClient, redis: PrivateRedis, proxy: BackgroundProxy
) -> None:
    """Stop, freeze and cut the cache in turn, checking every answer in between."""
    user = await sign_up(http)
    await http.post("/posts/post", json={"text": "a"}, headers=user.auth)
    await _cache_serves_again(http, user, redis)

    # Stopped: reads and logins are answered from the database; a write is refused.
    redis.stop()
    await _refused(http, user, "b")
    for _ in range(4):
        assert _texts(await http.get("/posts", headers=user.auth)) == ["a"]
    other = await sign_up(http)
    login = await http.post("/auth/login", json={"email": other.email, "password": PASSWORD})
    assert login.status_code == 200
    health = await http.get("/health")
    assert (health.status_code, health.json()["cache"]) == (503, "unavailable")

    # Back, empty, on the same address: used again, with no restart; the retry goes through.
    redis.start()
    await _cache_serves_again(http, user, redis)
    assert (await http.get("/health")).status_code == 200
    await _accepted(http, user, "b")
    assert _texts(await http.get("/posts", headers=user.auth)) == ["a", "b"]

    # Frozen: each worker waits out the cache's short timeout once, then does without it.
    redis.freeze()
    await _refused(http, user, "c")
    for _ in range(4):
        assert _texts(await http.get("/posts", headers=user.auth)) == ["a", "b"]
    redis.thaw()
    await _cache_serves_again(http, user, redis)
    await _accepted(http, user, "c")

    # Cut off with ["a", "b", "c"] cached, and back with that data: the write refused meanwhile
    # changed nothing, and once retried it is not hidden by the entry.
    await _cache_serves_again(http, user, redis)
    proxy.cut()
    await _refused(http, user, "d")
    assert _texts(await http.get("/posts", headers=user.auth)) == ["a", "b", "c"]
    proxy.restore()
    await _cache_serves_again(http, user, redis)
    await _accepted(http, user, "d")
    for _ in range(4):
        assert _texts(await http.get("/posts", headers=user.auth)) == ["a", "b", "c", "d"]


async def _refused(http: httpx.AsyncClient, user: User, text: str) -> None:
    """A write while the cache is away: a 503 that created nothing (checked by the caller)."""
    resp = await http.post("/posts/post", json={"text": text}, headers=user.auth)
    assert resp.status_code == 503, resp.text
    assert resp.json()["detail"]


async def _accepted(http: httpx.AsyncClient, user: User, text: str) -> None:
    """Retry a write refused during an outage until it is accepted (a worker may still be
    waiting to use the cache again): every answer a 201 or a 503, exactly one 201."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        resp = await http.post("/posts/post", json={"text": text}, headers=user.auth)
        assert resp.status_code in (201, 503), resp.text
        if resp.status_code == 201:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the write was still refused once the cache was back")


# the database drops us ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What a load saw: status codes, non-JSON or unexpected 503 bodies, transport errors."""

    statuses: list[int] = field(default_factory=list)
    bad_503: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    created: dict[int, str] = field(default_factory=dict)

    def record(self, resp: httpx.Response) -> None:
        """Count one answer."""
        self.statuses.append(resp.status_code)
        if resp.status_code == 503 and (
            resp.headers.get("content-type") != "application/json" or resp.json() != UNAVAILABLE
        ):
            self.bad_503.append(resp.content)


async def _mixed_requests(http: httpx.AsyncClient, user: User, tally: Tally, n: int) -> None:
    """Reads that need the database, and writes, one after the other."""
    for i in range(n):
        try:
            if i % 3 == 0:
                text = f"{user.id}-{i}"
                resp = await http.post("/posts/post", json={"text": text}, headers=user.auth)
                if resp.status_code == 201:
                    tally.created[resp.json()["post_id"]] = text
            elif i % 3 == 1 and tally.created:
                post_id = next(iter(tally.created))
                resp = await http.get(f"/posts/post/{post_id}", headers=user.auth)
            else:
                resp = await http.get("/posts", headers=user.auth)
        except httpx.HTTPError as exc:  # a timeout included: that is a hang
            tally.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        tally.record(resp)


@pytest.mark.parametrize("kind", ["mysql", "postgres"])
async def test_database_connections_killed_under_load(kind: str, tmp_path: Path) -> None:
    """Every connection of the service killed, again and again, while four clients read and
    write: each request is answered in time (a 2xx, or the JSON 503), then all is well again."""
    with database_stack(kind) as stack, serving(tmp_path, stack.env(), workers=2) as server:
        async with httpx.AsyncClient(
            base_url=server.url, timeout=REQUEST_TIMEOUT, limits=NO_KEEPALIVE
        ) as http:
            users = [await sign_up(http) for _ in range(4)]
            tallies = [Tally() for _ in users]
            load = asyncio.ensure_future(
                asyncio.gather(
                    *(_mixed_requests(http, u, t, 60) for u, t in zip(users, tallies, strict=True))
                )
            )
            killed = 0
            for _ in range(30):  # while the load runs, a few rounds of KILLs
                await asyncio.sleep(0.2)
                if load.done():
                    break
                killed += await asyncio.to_thread(stack.kill_connections)
            await load
            assert killed > 0, "no connection of the service was found to kill"
            for tally in tallies:
                assert tally.errors == [], "requests with no answer in time (a hang)"
                assert set(tally.statuses) <= {200, 201, 503}, sorted(set(tally.statuses))
                assert tally.bad_503 == []

            # Recovered by itself: ten successes in a row, within a few attempts.
            post_id = next(iter(tallies[0].created))
            recent: list[int] = []
            for _ in range(40):
                resp = await http.get(f"/posts/post/{post_id}", headers=users[0].auth)
                recent.append(resp.status_code)
                if recent[-10:] == [200] * 10:
                    break
            assert recent[-10:] == [200] * 10, recent

        # Every acknowledged write survived the kills.
        stored = dict(_texts_as_stored(stack.rows("SELECT id, text FROM posts")))
        acknowledged = {pid: text for tally in tallies for pid, text in tally.created.items()}
        assert {pid for pid, text in acknowledged.items() if stored.get(pid) != text} == set()


# the server dies, or is told to stop --------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """A server's environment and worker count, and a way to read its database directly."""

    env: dict[str, str]
    workers: int
    rows: Callable[[str], list[tuple[Any, ...]]]
    integrity_check: str


def sqlite_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    """Run one read-only ``query`` on the SQLite file ``path``."""
    con = sqlite3.connect(path)
    try:
        return list(con.execute(query).fetchall())
    finally:
        con.close()


def _texts_as_stored(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with a post's text decoded where the database keeps its UTF-8 bytes (PostgreSQL)."""
    return [
        tuple(value.decode() if isinstance(value, bytes) else value for value in row)
        for row in rows
    ]


# PostgreSQL's integrity check: amcheck verifies the posts' B-tree indexes against the heap
# (every row indexed, no index entry out of order); it raises if anything is corrupt.
PG_INTEGRITY_CHECK = (
    "SELECT 'ok' FROM (SELECT bt_index_parent_check(c.oid, true) FROM pg_class c "
    "WHERE c.relname IN ('pk_posts', 'ix_posts_user_id_id')) AS checked LIMIT 1"
)


@contextmanager
def deployment(kind: str, tmp_path: Path) -> Iterator[Deployment]:
    """``sqlite``: one worker on a file; ``mariadb``, ``postgres``: two workers on that database
    and Redis."""
    if kind == "sqlite":
        path = tmp_path / "posts.db"
        yield Deployment(
            sqlite_env(path), 1, lambda query: sqlite_rows(path, query), "PRAGMA integrity_check"
        )
        return
    with database_stack("mysql" if kind == "mariadb" else kind) as stack:
        check = "CHECK TABLE posts"
        if kind == "postgres":
            pg_rows(stack.database, "CREATE EXTENSION IF NOT EXISTS amcheck")
            check = PG_INTEGRITY_CHECK
        yield Deployment(stack.env(), 2, lambda query: _texts_as_stored(stack.rows(query)), check)


def checked_text(tag: str) -> str:
    """A unique post text of 1 to 64 KiB, derived from ``tag``: a torn copy matches nothing."""
    digest = hashlib.sha256(tag.encode()).hexdigest()
    size = 1 + int(digest[:8], 16) % 65536
    return f"{tag}:" + (digest * (size // len(digest) + 1))[:size]


@dataclass
class Ledger:
    """Every write a load sent, in order per post, and which ones the server acknowledged."""

    history: dict[int, list[str]] = field(default_factory=dict)  # post id -> texts, in order
    acknowledged: dict[int, int] = field(default_factory=dict)  # post id -> last acked index
    sent: set[str] = field(default_factory=set)
    acks: int = 0


async def _writer(
    http: httpx.AsyncClient, user: User, ledger: Ledger, name: str, enough: asyncio.Event
) -> None:
    """Create posts and update them, one request at a time, until the server is gone."""
    own: list[int] = []
    for n in range(10_000):  # bounded: the crash comes long before
        text = checked_text(f"{name}-{n}")
        ledger.sent.add(text)
        try:
            if own and n % 2:
                post_id = own[n % len(own)]
                ledger.history[post_id].append(text)
                resp = await http.put(
                    f"/posts/post/{post_id}", json={"text": text}, headers=user.auth
                )
                assert resp.status_code == 200, resp.text
                ledger.acknowledged[post_id] = len(ledger.history[post_id]) - 1
            else:
                resp = await http.post("/posts/post", json={"text": text}, headers=user.auth)
                assert resp.status_code == 201, resp.text
                post_id = resp.json()["post_id"]
                own.append(post_id)
                ledger.history[post_id] = [text]
                ledger.acknowledged[post_id] = 0
        except httpx.TransportError:
            return  # the server is gone
        ledger.acks += 1
        if ledger.acks >= 80:
            enough.set()


@pytest.mark.parametrize("kind", ["sqlite", "mariadb", "postgres"])
async def test_kill_9_during_writes_loses_no_acknowledged_write(kind: str, tmp_path: Path) -> None:
    ledger = Ledger()
    with deployment(kind, tmp_path) as where:
        with serving(tmp_path, where.env, where.workers) as server:
            async with httpx.AsyncClient(
                base_url=server.url, timeout=REQUEST_TIMEOUT, limits=NO_KEEPALIVE
            ) as http:
                users = [await sign_up(http) for _ in range(6)]
                enough = asyncio.Event()
                writers = [
                    asyncio.create_task(_writer(http, user, ledger, f"w{i}", enough))
                    for i, user in enumerate(users)
                ]
                await asyncio.wait_for(enough.wait(), 120)
                crash(server)  # requests are in flight on every writer
                await asyncio.gather(*writers)
        assert server.proc.returncode == -signal.SIGKILL

        with serving(tmp_path, where.env, where.workers) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT) as http:
                listed: dict[int, str] = {}
                for user in users:
                    resp = await http.get("/posts", headers=user.auth)
                    listed |= {post["post_id"]: post["text"] for post in resp.json()}
        stored = dict(where.rows("SELECT id, text FROM posts"))
        integrity = where.rows(where.integrity_check)

    assert listed == stored, "the API and the database disagree"
    lost = [
        post_id
        for post_id, index in ledger.acknowledged.items()
        if stored.get(post_id) not in ledger.history[post_id][index:]
    ]
    assert lost == [], f"acknowledged writes missing after the crash: {lost}"
    assert [post_id for post_id, text in stored.items() if text not in ledger.sent] == []
    assert integrity[0][-1].lower() == "ok", integrity


@pytest.mark.parametrize("kind", ["sqlite", "mariadb", "postgres"])
async def test_sigterm_lets_requests_in_flight_finish(kind: str, tmp_path: Path) -> None:
    in_flight = 4
    with deployment(kind, tmp_path) as where:
        server = Server(tmp_path, where.env, where.workers)
        clients = [
            httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT)
            for _ in range(in_flight)
        ]
        try:
            server.wait_ready()
            user = await sign_up(clients[0])
            gate = asyncio.Event()
            halfway = asyncio.Semaphore(0)

            async def body(i: int) -> AsyncIterator[bytes]:
                yield f'{{"text": "in flight {i}'.encode()
                halfway.release()  # the first half is on the wire
                await gate.wait()
                yield b'"}'

            for client in clients:  # one open connection each, accepted by the server
                assert (await client.get("/health")).status_code == 200
            headers = user.auth | {"Content-Type": "application/json"}
            posts = [
                asyncio.create_task(client.post("/posts/post", content=body(i), headers=headers))
                for i, client in enumerate(clients)
            ]
            for _ in range(in_flight):
                await asyncio.wait_for(halfway.acquire(), 20)
            await asyncio.to_thread(wait_until_read, server.port, in_flight)

            os.kill(server.proc.pid, signal.SIGTERM)
            await asyncio.to_thread(_wait_for_shutdown, server, where.workers)
            gate.set()  # the rest of each body arrives after the shutdown has begun
            answers = await asyncio.gather(*posts)
            assert [a.status_code for a in answers] == [201] * in_flight
            assert await asyncio.to_thread(server.proc.wait, 40) in STOPPED
        finally:
            for client in clients:
                await client.aclose()
            server.stop()
        texts = {text for (text,) in where.rows("SELECT text FROM posts")}
    assert texts == {f"in flight {i}" for i in range(in_flight)}


def _wait_for_shutdown(server: Server, workers: int) -> None:
    """Wait until every serving process has logged that it is shutting down."""
    deadline = time.monotonic() + 20
    while read_log(server).count("Shutting down") < workers:
        assert time.monotonic() < deadline, read_log(server)[-3000:]
        time.sleep(0.05)
