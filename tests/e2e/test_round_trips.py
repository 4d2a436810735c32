"""Database statements per request, at the floor the README promises.

Counted twice: as SQLAlchemy sends them (every database), and at the wire: from MariaDB's general
log, where every command a connection really sends shows up (BEGIN, COMMIT and ROLLBACK too),
and on PostgreSQL from the protocol messages themselves, read by a proxy.
The table in the README is these numbers; a change that adds a statement fails here.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bench.statements import GeneralLogCounter, general_log_on
from fastapi import FastAPI
from sqlalchemy import make_url

from tests.support import (
    DATABASE_SERVERS,
    MYSQL,
    PASSWORD,
    PG_HOST,
    PG_PORT,
    LocalServer,
    MakeApp,
    StatementLog,
    User,
    list_read,
    new_email,
    sign_up,
    user_from,
    verbs,
)

# The current tag of each post and list, as the last response gave it, for the conditional steps.
TAGS: dict[str, str] = {}


def remember(name: str, resp: httpx.Response) -> httpx.Response:
    """Keep ``resp``'s ETag under ``name`` for a later conditional request."""
    if "etag" in resp.headers:
        TAGS[name] = resp.headers["etag"]
    return resp


@dataclass
class Ctx:
    """What the steps act on: a user with a post, a second session of that user (cached), a
    third one never used yet, and another account."""

    user: User
    post_id: int
    spare: User
    unused: User
    other: User
    spent_refresh: str


Step = Callable[[httpx.AsyncClient, Ctx], Awaitable[httpx.Response]]


async def _signup(c: httpx.AsyncClient, _x: Ctx) -> httpx.Response:
    return await c.post("/auth/signup", json={"email": new_email(), "password": PASSWORD})


async def _login(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.post("/auth/login", json={"email": x.user.email, "password": PASSWORD})


async def _create(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    resp = await c.post("/posts/post", json={"text": "counted"}, headers=x.user.auth)
    TAGS["created"] = str(resp.json()["post_id"])
    return resp


async def _list(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return remember("list", await c.get("/posts", headers=x.user.auth))


async def _list_304(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.get("/posts", headers=x.user.auth | {"If-None-Match": TAGS["list"]})


async def _page(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.get("/posts?limit=20&after=0", headers=x.user.auth)


async def _get(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return remember("post", await c.get(f"/posts/post/{x.post_id}", headers=x.user.auth))


async def _get_304(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    headers = x.user.auth | {"If-None-Match": TAGS["post"]}
    return await c.get(f"/posts/post/{x.post_id}", headers=headers)


async def _update(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    url = f"/posts/post/{x.post_id}"
    return remember("post", await c.put(url, json={"text": "x"}, headers=x.user.auth))


async def _update_if_match(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    headers = x.user.auth | {"If-Match": TAGS["post"]}
    url = f"/posts/post/{x.post_id}"
    return remember("post", await c.put(url, json={"text": "y"}, headers=headers))


async def _update_412(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    headers = x.user.auth | {"If-Match": f'"p{x.post_id}.0"'}
    return await c.put(f"/posts/post/{x.post_id}", json={"text": "z"}, headers=headers)


async def _delete_412(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    headers = x.user.auth | {"If-Match": f'"p{x.post_id}.0"'}
    return await c.delete(f"/posts/post/{x.post_id}", headers=headers)


async def _delete_if_match(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    headers = x.user.auth | {"If-Match": TAGS["post"]}
    return await c.delete(f"/posts/post/{x.post_id}", headers=headers)


async def _delete(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.delete(f"/posts/post/{TAGS['created']}", headers=x.user.auth)


async def _get_missing(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.get("/posts/post/999999999", headers=x.user.auth)


async def _delete_missing(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.delete("/posts/post/999999999", headers=x.user.auth)


async def _update_missing(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.put("/posts/post/999999999", json={"text": "x"}, headers=x.user.auth)


async def _refresh(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    resp = await c.post("/auth/refresh", json={"refresh_token": x.user.refresh_token})
    x.user.refresh_token = resp.json()["refresh_token"]
    return resp


async def _refresh_forged(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.post("/auth/refresh", json={"refresh_token": x.user.refresh_token + "x"})


async def _refresh_reused(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.post("/auth/refresh", json={"refresh_token": x.spent_refresh})


async def _refresh_ended(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.post("/auth/refresh", json={"refresh_token": x.other.refresh_token})


async def _me(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.get("/auth/me", headers=x.user.auth)


async def _me_new_session(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.get("/auth/me", headers=x.unused.auth)


async def _logout(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.post("/auth/logout", headers=x.spare.auth)


async def _logout_all(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.post("/auth/logout-all", headers=x.other.auth)


async def _ended(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.get("/posts", headers=x.spare.auth)


async def _password(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    body = {"current_password": PASSWORD, "new_password": PASSWORD}
    resp = await c.put("/auth/password", json=body, headers=x.user.auth)
    x.user = user_from(x.user.email, resp.json())
    return resp


async def _delete_account(c: httpx.AsyncClient, x: Ctx) -> httpx.Response:
    return await c.request("DELETE", "/auth/me", json={"password": PASSWORD}, headers=x.user.auth)


async def _livez(c: httpx.AsyncClient, _x: Ctx) -> httpx.Response:
    return await c.get("/livez")


async def _readyz(c: httpx.AsyncClient, _x: Ctx) -> httpx.Response:
    return await c.get("/readyz")


def expected(backend: str) -> dict[str, tuple[Step, int, list[str]]]:
    """Endpoint -> (request, status, statements it may send), per database.

    Every protected request checks its session: no statement while the cache holds it, one
    SELECT when it does not. A session is cached as live when it starts ("me (new session)"
    pays nothing); a revocation of any of a user's sessions drops the cached state of all of
    them, so each of the others pays one SELECT on its next request ("password", after the
    logout of another session of that user).
    """
    # MySQL/MariaDB have no UPDATE ... RETURNING: the update reads created_at back.
    update = ["UPDATE", "SELECT"] if backend == "mysql" else ["UPDATE"]
    return {
        "signup": (_signup, 201, ["BEGIN", "INSERT", "INSERT", "COMMIT"]),
        "login": (_login, 200, ["SELECT", "INSERT"]),
        "create": (_create, 201, ["INSERT"]),
        "page (miss)": (_page, 200, ["SELECT"]),
        "list (miss)": (_list, 200, list_read(backend)),
        "list (hit)": (_list, 200, []),
        "page (hit)": (_page, 200, []),
        "list (304)": (_list_304, 304, []),
        "get": (_get, 200, ["SELECT"]),
        "get (304)": (_get_304, 304, ["SELECT"]),
        "update": (_update, 200, update),
        "update (If-Match)": (_update_if_match, 200, update),
        "update (412)": (_update_412, 412, ["UPDATE", "SELECT"]),
        "delete (412)": (_delete_412, 412, ["DELETE", "SELECT"]),
        "delete (If-Match)": (_delete_if_match, 204, ["DELETE"]),
        "delete": (_delete, 204, ["DELETE"]),
        "get (404)": (_get_missing, 404, ["SELECT"]),
        "update (404)": (_update_missing, 404, ["UPDATE"]),
        "delete (404)": (_delete_missing, 404, ["DELETE"]),
        "livez": (_livez, 200, []),
        "readyz": (_readyz, 200, ["SELECT"]),
        "refresh": (_refresh, 200, ["UPDATE"]),
        "refresh (forged)": (_refresh_forged, 401, []),
        "me": (_me, 200, ["SELECT"]),
        "me (new session)": (_me_new_session, 200, ["SELECT"]),
        "logout": (_logout, 204, ["UPDATE"]),
        # The first request after the end reads the database, which caches "ended".
        "ended session": (_ended, 401, ["SELECT"]),
        "ended session (again)": (_ended, 401, []),
        # A spent token: the failed spend, the SELECT that tells reuse, the revocation.
        "refresh (reused)": (_refresh_reused, 401, ["UPDATE", "SELECT", "UPDATE"]),
        "logout-all": (_logout_all, 204, ["UPDATE"]),
        # A token of an ended session: the failed spend and the SELECT; nothing to revoke.
        "refresh (ended session)": (_refresh_ended, 401, ["UPDATE", "SELECT"]),
        # The session check's SELECT first: the logout above ended another of this user's.
        "password": (
            _password,
            200,
            ["SELECT", "SELECT", "BEGIN", "UPDATE", "UPDATE", "INSERT", "COMMIT"],
        ),
        # The password change's new session was cached as live: no session check SELECT.
        "delete account": (
            _delete_account,
            204,
            # The user's row lock first (SELECT ... FOR UPDATE), then the sessions, the user.
            ["SELECT", "BEGIN", "SELECT", "UPDATE", "DELETE", "COMMIT"],
        ),
    }


async def run_all(
    client: httpx.AsyncClient, backend: str, observe: Callable[[str], Any]
) -> dict[str, tuple[list[str], Any]]:
    """Run each endpoint once (in an order that makes the list a miss, then a hit)."""
    user = await sign_up(client)
    post_id = (await client.post("/posts/post", json={"text": "x"}, headers=user.auth)).json()
    login = {"email": user.email, "password": PASSWORD}
    spare = user_from(user.email, (await client.post("/auth/login", json=login)).json())
    unused = user_from(user.email, (await client.post("/auth/login", json=login)).json())
    other = await sign_up(client)
    for warm in (spare, other):  # their sessions are now cached
        assert (await client.get("/auth/me", headers=warm.auth)).status_code == 200
    # The unused session's first refresh token, spent: presenting it again is reuse.
    spend = await client.post("/auth/refresh", json={"refresh_token": unused.refresh_token})
    assert spend.status_code == 200
    ctx = Ctx(user, post_id["post_id"], spare, unused, other, unused.refresh_token)
    results = {}
    for name, (step, status, statements) in expected(backend).items():
        async with observe(name) as seen:
            resp = await step(client, ctx)
        assert resp.status_code == status, (name, resp.text)
        results[name] = (statements, seen)
    return results


async def test_statements_per_endpoint(
    client: httpx.AsyncClient, app: FastAPI, backend: str, statements: StatementLog
) -> None:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def observe(_name: str):  # type: ignore[no-untyped-def]
        with statements.watching(app) as sent:
            yield sent

    for name, (wanted, sent) in (await run_all(client, backend, observe)).items():
        assert verbs(sent) == wanted, f"{name}: {sent}"


async def test_commands_at_the_wire(client: httpx.AsyncClient, app: FastAPI, backend: str) -> None:
    """MariaDB's general log: each request sends exactly its statements, and no transaction
    control at all (autocommit), nor a reset when the connection goes back to the pool."""
    if backend != "mysql":
        pytest.skip("the general log is MariaDB/MySQL's")
    from contextlib import asynccontextmanager

    # Only the rows of this app's database's connections: other tests (another xdist worker)
    # may talk to the server meanwhile.
    database = make_url(app.state.settings.database_url).database or ""
    counter = GeneralLogCounter(database, MYSQL)
    with general_log_on(MYSQL):
        first = await sign_up(client)
        await client.get("/posts", headers=first.auth)  # open a pooled connection first

        @asynccontextmanager
        async def observe(_name: str):  # type: ignore[no-untyped-def]
            await counter.start()
            seen: list[str] = []
            yield seen
            seen.extend(await counter.stop())

        try:
            results = await run_all(client, backend, observe)
        finally:
            counter.close()
    for name, (wanted, sent) in results.items():
        sent = [s for s in sent if not s.startswith(("SELECT CONNECTION_ID", "SELECT @@global"))]
        assert verbs(sent) == wanted, f"{name}: {sent}"


class CountingBackend:
    """Wraps a cache backend and records each call: every backend call is one round trip
    (one MGET, one SET, one pipeline)."""

    def __init__(self, backend: Any) -> None:
        """Forward to ``backend``."""
        self.backend = backend
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        """The backend's method, counted."""
        method = getattr(self.backend, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await method(*args, **kwargs)

        return counted


async def test_cache_round_trips(
    client: httpx.AsyncClient, app: FastAPI, statements: StatementLog
) -> None:
    """A cached GET /posts is one cache round trip and no statement, the session check
    included; another protected request adds one round trip (the session) to its own work; a
    write or a revocation adds two (the mark before the database, the fresh version after)."""
    user = await sign_up(client)
    await client.post("/posts/post", json={"text": "x"}, headers=user.auth)
    await client.get("/posts", headers=user.auth)  # the list and the session are now cached
    cache = app.state.cache
    counting = CountingBackend(cache.backend)
    cache.backend = counting
    try:
        with statements.watching(app) as sent:
            resp = await client.get("/posts", headers=user.auth)
        assert resp.status_code == 200
        assert (counting.calls, sent) == (["get_many"], [])
        counting.calls.clear()
        with statements.watching(app) as sent:
            resp = await client.get("/auth/me", headers=user.auth)
        assert resp.status_code == 200
        assert (counting.calls, verbs(sent)) == (["get_many"], ["SELECT"])
        counting.calls.clear()
        resp = await client.post("/posts/post", json={"text": "y"}, headers=user.auth)
        assert resp.status_code == 201
        assert counting.calls == ["get_many", "mark", "unmark"]
        counting.calls.clear()
        assert (await client.post("/auth/logout", headers=user.auth)).status_code == 204
        assert counting.calls == ["get_many", "mark", "unmark"]
    finally:
        cache.backend = counting.backend


class PgMessages(LocalServer):
    """A proxy to PostgreSQL that records the type of every message the client sends.

    After start-up, each frontend message is one type byte and a length: ``Q`` a simple query
    (how BEGIN, COMMIT or ROLLBACK would go), ``P`` a Parse (a statement prepared), ``B``/``E``/
    ``S`` Bind, Execute and Sync (a prepared statement run: one round trip).
    """

    def __init__(self) -> None:
        """Record nothing yet; ``start()`` listens."""
        super().__init__()
        self.sent: list[str] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
        await asyncio.gather(
            self._pipe(reader, up_writer, record=True),
            self._pipe(up_reader, writer, record=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        pending, started = b"", False
        with suppress(OSError):
            while data := await reader.read(65536):
                # Recorded before it is forwarded: once the server has answered a message, the
                # message is in ``sent``.
                if record:
                    pending, started = self._record(pending + data, started)
                writer.write(data)
                await writer.drain()
        writer.close()

    def _record(self, pending: bytes, started: bool) -> tuple[bytes, bool]:
        """Record the whole messages in ``pending``; return the rest and if start-up is done."""
        while True:
            if not started:  # SSLRequest, then StartupMessage: a length, no type byte
                if len(pending) < 8 or len(pending) < struct.unpack("!I", pending[:4])[0]:
                    return pending, started
                length, code = struct.unpack("!II", pending[:8])
                started = code != 80877103  # the SSLRequest code
                pending = pending[length:]
                continue
            if len(pending) < 5 or len(pending) < 1 + struct.unpack("!I", pending[1:5])[0]:
                return pending, started
            self.sent.append(chr(pending[0]))
            pending = pending[1 + struct.unpack("!I", pending[1:5])[0] :]


async def test_messages_at_the_wire_on_postgres(
    make_app: MakeApp, backend: str, base_settings: dict[str, Any]
) -> None:
    """On PostgreSQL, once a connection has prepared its statements, each statement of a request
    is one Bind/Execute/Sync and nothing else goes on the wire: no simple queries, no
    re-prepare, no ping, no reset when the connection returns to the pool. BEGIN and COMMIT
    (signup, password change, account deletion) are prepared statements too; a list miss is one
    batch's SELECT, like any other."""
    if backend != "postgres":
        pytest.skip("PostgreSQL's protocol")
    wire = PgMessages()
    await wire.start()
    try:
        database = base_settings["database_url"].rsplit("/", 1)[1]
        client = await make_app(
            database_url=DATABASE_SERVERS["postgres"].url(database, port=wire.port)
        )

        @asynccontextmanager
        async def observe(_name: str) -> AsyncIterator[list[str]]:
            wire.sent.clear()
            seen: list[str] = []
            yield seen
            seen.extend(wire.sent)

        await run_all(client, backend, observe)  # prepares every statement on the connection
        results = await run_all(client, backend, observe)
    finally:
        await wire.stop()
    for name, (wanted, sent) in results.items():
        assert "".join(sent) == "BES" * len(wanted), f"{name}: {sent}"
