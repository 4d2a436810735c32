"""Database statements per request, at the floor the README promises.

Counted twice: as SQLAlchemy sends them (both databases), and at the wire from MariaDB's general
log, where every command a connection really sends shows up (BEGIN, COMMIT and ROLLBACK too).
The table in the README is these numbers; a change that adds a statement fails here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import PASSWORD, StatementLog, User, mysql_connect, new_email, sign_up, verbs

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


async def _livez(c: httpx.AsyncClient, _u: User, _p: int) -> httpx.Response:
    return await c.get("/livez")


async def _readyz(c: httpx.AsyncClient, _u: User, _p: int) -> httpx.Response:
    return await c.get("/readyz")


def expected(backend: str) -> dict[str, tuple[Step, int, list[str]]]:
    """Endpoint -> (request, status, statements it may send), per database."""
    update = ["UPDATE"] if backend == "sqlite" else ["UPDATE", "SELECT"]  # no UPDATE..RETURNING
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
        "livez": (_livez, 200, []),
        "readyz": (_readyz, 200, ["SELECT"]),
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
