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
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import (
    DATABASE_SERVERS,
    PASSWORD,
    PG_HOST,
    PG_PORT,
    MakeApp,
    StatementLog,
    User,
    mysql_connect,
    new_email,
    sign_up,
    verbs,
)

Step = Callable[[httpx.AsyncClient, User, int], Awaitable[httpx.Response]]


async def _signup(c: httpx.AsyncClient, _u: User, _p: int) -> httpx.Response:
    return await c.post("/auth/signup", json={"email": new_email(), "password": PASSWORD})


async def _login(c: httpx.AsyncClient, u: User, _p: int) -> httpx.Response:
    return await c.post("/auth/login", json={"email": u.email, "password": PASSWORD})


async def _create(c: httpx.AsyncClient, u: User, _p: int) -> httpx.Response:
    return await c.post("/posts/post", json={"text": "counted"}, headers=u.auth)


async def _list(c: httpx.AsyncClient, u: User, _p: int) -> httpx.Response:
    return await c.get("/posts", headers=u.auth)


async def _get(c: httpx.AsyncClient, u: User, p: int) -> httpx.Response:
    return await c.get(f"/posts/post/{p}", headers=u.auth)


async def _update(c: httpx.AsyncClient, u: User, p: int) -> httpx.Response:
    return await c.put(f"/posts/post/{p}", json={"text": "changed"}, headers=u.auth)


async def _delete(c: httpx.AsyncClient, u: User, p: int) -> httpx.Response:
    return await c.delete(f"/posts/post/{p}", headers=u.auth)


async def _get_missing(c: httpx.AsyncClient, u: User, _p: int) -> httpx.Response:
    return await c.get("/posts/post/999999999", headers=u.auth)


async def _delete_missing(c: httpx.AsyncClient, u: User, _p: int) -> httpx.Response:
    return await c.delete("/posts/post/999999999", headers=u.auth)


async def _update_missing(c: httpx.AsyncClient, u: User, _p: int) -> httpx.Response:
    return await c.put("/posts/post/999999999", json={"text": "x"}, headers=u.auth)


def expected(backend: str) -> dict[str, tuple[Step, int, list[str]]]:
    """Endpoint -> (request, status, statements it may send), per database."""
    # MySQL/MariaDB have no UPDATE ... RETURNING: the update reads created_at back.
    update = ["UPDATE", "SELECT"] if backend == "mysql" else ["UPDATE"]
    return {
        "signup": (_signup, 201, ["INSERT"]),
        "login": (_login, 200, ["SELECT"]),
        "create": (_create, 201, ["INSERT"]),
        "list (miss)": (_list, 200, ["SELECT"]),
        "list (hit)": (_list, 200, []),
        "get": (_get, 200, ["SELECT"]),
        "update": (_update, 200, update),
        "delete": (_delete, 204, ["DELETE"]),
        "get (404)": (_get_missing, 404, ["SELECT"]),
        "update (404)": (_update_missing, 404, ["UPDATE"]),
        "delete (404)": (_delete_missing, 404, ["DELETE"]),
    }


async def run_all(
    client: httpx.AsyncClient, backend: str, observe: Callable[[str], Any]
) -> dict[str, tuple[list[str], Any]]:
    """Run each endpoint once (in an order that makes the list a miss, then a hit)."""
    user = await sign_up(client)
    post_id = (await _create(client, user, 0)).json()["post_id"]
    results = {}
    for name, (step, status, statements) in expected(backend).items():
        async with observe(name) as seen:
            resp = await step(client, user, post_id)
        assert resp.status_code == status, (name, resp.text)
        results[name] = (statements, seen)
    return results


async def test_statements_per_endpoint(
    client: httpx.AsyncClient, app: FastAPI, backend: str, statements: StatementLog
) -> None:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def observe(_name: str):  # type: ignore[no-untyped-def]
        with statements.watching(app.state.engine) as sent:
            yield sent

    for name, (wanted, sent) in (await run_all(client, backend, observe)).items():
        assert verbs(sent) == wanted, f"{name}: {sent}"


async def test_commands_at_the_wire(client: httpx.AsyncClient, app: FastAPI, backend: str) -> None:
    """MariaDB's general log: each request sends exactly its statements, and no transaction
    control at all (autocommit), nor a reset when the connection goes back to the pool."""
    if backend != "mysql":
        pytest.skip("the general log is MariaDB/MySQL's")
    from contextlib import asynccontextmanager

    admin = mysql_connect()
    with admin.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        (me,) = cur.fetchone() or (None,)
        cur.execute("SELECT @@global.general_log, @@global.log_output")
        (was_on, was_output) = cur.fetchone() or (None, None)
        cur.execute("SET GLOBAL log_output = 'TABLE'")
        cur.execute("SET GLOBAL general_log = 1")
    await _list(client, await sign_up(client), 0)  # open a pooled connection first

    @asynccontextmanager
    async def observe(_name: str):  # type: ignore[no-untyped-def]
        with admin.cursor() as cur:
            cur.execute("SELECT NOW(6)")
            (start,) = cur.fetchone() or (None,)
        seen: list[str] = []
        yield seen
        with admin.cursor() as cur:
            cur.execute(
                "SELECT argument FROM mysql.general_log WHERE event_time >= %s AND thread_id <> %s"
                " AND command_type IN ('Query', 'Execute') AND argument NOT LIKE 'SELECT NOW(6)%%'"
                " AND argument NOT LIKE 'SET GLOBAL%%' ORDER BY event_time",
                (start, me),
            )
            seen.extend(
                row[0].decode() if isinstance(row[0], bytes) else row[0] for row in cur.fetchall()
            )

    try:
        results = await run_all(client, backend, observe)
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL general_log = %s", (was_on,))
            cur.execute("SET GLOBAL log_output = %s", (was_output,))
        admin.close()
    for name, (wanted, sent) in results.items():
        sent = [s for s in sent if not s.startswith(("SELECT CONNECTION_ID", "SELECT @@global"))]
        assert verbs(sent) == wanted, f"{name}: {sent}"


class PgMessages:
    """A proxy to PostgreSQL that records the type of every message the client sends.

    After start-up, each frontend message is one type byte and a length: ``Q`` a simple query
    (how BEGIN, COMMIT or ROLLBACK would go), ``P`` a Parse (a statement prepared), ``B``/``E``/
    ``S`` Bind, Execute and Sync (a prepared statement run: one round trip).
    """

    def __init__(self) -> None:
        """Record nothing yet; ``start()`` listens."""
        self.sent: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on a free local port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening (open connections end with their client)."""
        if self._server is not None:
            self._server.close()

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
    is one Bind/Execute/Sync and nothing else goes on the wire: no BEGIN, COMMIT or ROLLBACK
    (simple queries), no re-prepare, no ping, no reset when the connection returns to the pool."""
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
