"""The raw-driver floor: a bare ASGI app sending posts-api's post statements on the driver itself.

No framework and no SQLAlchemy at request time: aiosqlite, asyncmy or asyncpg (the drivers
posts-api uses), picked from ``DATABASE_URL``, run the same statements as the service's
repository for GET, POST, PUT and DELETE of /posts/post, with the owner's id from the
``X-User-Id`` header. What separates reference b from this is FastAPI and SQLAlchemy; what
separates this from the bare ASGI app is the driver and the database.

Timestamps are stored as posts-api stores them (naive UTC; on SQLite, SQLAlchemy's text form)
and returned as ISO strings; the answers are JSON written with orjson.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp, Receive, Scope, Send

JSON = [(b"content-type", b"application/json")]
POOL_SIZE = 10
PATH = re.compile(r"^/posts/post(?:/(\d+))?$")


class Database(Protocol):
    """The four statements, on one driver. ``None``/``False``: no such post of that user."""

    async def get(self, post_id: int, user_id: int) -> dict[str, Any] | None:
        """SELECT one post of the user."""

    async def create(self, user_id: int, text: str) -> int:
        """INSERT a post; its id."""

    async def update(self, post_id: int, user_id: int, text: str) -> dict[str, Any] | None:
        """UPDATE a post of the user; the post as it is now."""

    async def delete(self, post_id: int, user_id: int) -> bool:
        """DELETE a post of the user."""

    async def close(self) -> None:
        """Close the connections."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _post(row: Any) -> dict[str, Any]:
    return {"post_id": row[0], "text": row[1], "created_at": row[2], "updated_at": row[3]}


def _text_post(row: Any) -> dict[str, Any]:
    """A post whose text came back as UTF-8 bytes (PostgreSQL's ``bytea``)."""
    return _post((row[0], bytes(row[1]).decode(), row[2], row[3]))


class SQLite:
    """aiosqlite, one connection in autocommit mode (SQLite has one writer anyway)."""

    def __init__(self, conn: Any) -> None:
        """Use ``conn``, an open aiosqlite connection."""
        self.conn = conn

    @classmethod
    async def open(cls, path: str) -> SQLite:
        """Connect with the pragmas posts-api sets."""
        import aiosqlite

        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        return cls(conn)

    @staticmethod
    def _stamp() -> str:
        return _now().strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's DateTime on SQLite

    async def get(self, post_id: int, user_id: int) -> dict[str, Any] | None:
        """SELECT one post of the user."""
        sql = "SELECT id, text, created_at, updated_at FROM posts WHERE id = ? AND user_id = ?"
        async with self.conn.execute(sql, (post_id, user_id)) as cur:
            row = await cur.fetchone()
        return None if row is None else _post(row)

    async def create(self, user_id: int, text: str) -> int:
        """INSERT a post; its id."""
        now = self._stamp()
        sql = "INSERT INTO posts (user_id, text, created_at, updated_at) VALUES (?, ?, ?, ?)"
        async with self.conn.execute(sql, (user_id, text, now, now)) as cur:
            return int(cur.lastrowid)

    async def update(self, post_id: int, user_id: int, text: str) -> dict[str, Any] | None:
        """UPDATE ... RETURNING."""
        sql = (
            "UPDATE posts SET text = ?, updated_at = ? WHERE id = ? AND user_id = ? "
            "RETURNING id, text, created_at, updated_at"
        )
        async with self.conn.execute(sql, (text, self._stamp(), post_id, user_id)) as cur:
            row = await cur.fetchone()
        return None if row is None else _post(row)

    async def delete(self, post_id: int, user_id: int) -> bool:
        """DELETE a post of the user."""
        sql = "DELETE FROM posts WHERE id = ? AND user_id = ?"
        async with self.conn.execute(sql, (post_id, user_id)) as cur:
            return bool(cur.rowcount)

    async def close(self) -> None:
        """Close the connection."""
        await self.conn.close()


class MySQL:
    """asyncmy, a pool of autocommit connections."""

    def __init__(self, pool: Any) -> None:
        """Use ``pool``, an asyncmy pool."""
        self.pool = pool

    @classmethod
    async def open(cls, url: Any) -> MySQL:
        """Create the pool."""
        import asyncmy

        pool = await asyncmy.create_pool(
            host=url.host,
            port=url.port or 3306,
            user=url.username,
            password=url.password or "",
            db=url.database,
            autocommit=True,
            charset="utf8mb4",
            minsize=1,
            maxsize=POOL_SIZE,
        )
        return cls(pool)

    async def _run(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, int, int]:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            count = await cur.execute(sql, args)
            return await cur.fetchone(), count, cur.lastrowid

    async def get(self, post_id: int, user_id: int) -> dict[str, Any] | None:
        """SELECT one post of the user."""
        sql = "SELECT id, text, created_at, updated_at FROM posts WHERE id = %s AND user_id = %s"
        row, _, _ = await self._run(sql, (post_id, user_id))
        return None if row is None else _post(row)

    async def create(self, user_id: int, text: str) -> int:
        """INSERT a post; its id."""
        now = _now()
        sql = "INSERT INTO posts (user_id, text, created_at, updated_at) VALUES (%s, %s, %s, %s)"
        _, _, last = await self._run(sql, (user_id, text, now, now))
        return int(last)

    async def update(self, post_id: int, user_id: int, text: str) -> dict[str, Any] | None:
        """UPDATE, then read ``created_at`` back (no RETURNING), as posts-api does."""
        now = _now()
        sql = "UPDATE posts SET text = %s, updated_at = %s WHERE id = %s AND user_id = %s"
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            if not await cur.execute(sql, (text, now, post_id, user_id)):
                return None
            await cur.execute(
                "SELECT created_at FROM posts WHERE id = %s AND user_id = %s", (post_id, user_id)
            )
            row = await cur.fetchone()
        return None if row is None else _post((post_id, text, row[0], now))

    async def delete(self, post_id: int, user_id: int) -> bool:
        """DELETE a post of the user."""
        sql = "DELETE FROM posts WHERE id = %s AND user_id = %s"
        _, count, _ = await self._run(sql, (post_id, user_id))
        return bool(count)

    async def close(self) -> None:
        """Close the pool."""
        self.pool.close()
        await self.pool.wait_closed()


class Postgres:
    """asyncpg, a pool. Post text is UTF-8 ``bytea`` there (as posts-api stores it)."""

    def __init__(self, pool: Any) -> None:
        """Use ``pool``, an asyncpg pool."""
        self.pool = pool

    @classmethod
    async def open(cls, url: Any) -> Postgres:
        """Create the pool."""
        import asyncpg

        pool = await asyncpg.create_pool(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=url.database,
            min_size=1,
            max_size=POOL_SIZE,
        )
        return cls(pool)

    async def get(self, post_id: int, user_id: int) -> dict[str, Any] | None:
        """SELECT one post of the user."""
        sql = "SELECT id, text, created_at, updated_at FROM posts WHERE id = $1 AND user_id = $2"
        row = await self.pool.fetchrow(sql, post_id, user_id)
        return None if row is None else _text_post(row)

    async def create(self, user_id: int, text: str) -> int:
        """INSERT ... RETURNING id."""
        now = _now()
        sql = (
            "INSERT INTO posts (user_id, text, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4) RETURNING id"
        )
        return int(await self.pool.fetchval(sql, user_id, text.encode(), now, now))

    async def update(self, post_id: int, user_id: int, text: str) -> dict[str, Any] | None:
        """UPDATE ... RETURNING."""
        sql = (
            "UPDATE posts SET text = $1, updated_at = $2 WHERE id = $3 AND user_id = $4 "
            "RETURNING id, text, created_at, updated_at"
        )
        row = await self.pool.fetchrow(sql, text.encode(), _now(), post_id, user_id)
        return None if row is None else _text_post(row)

    async def delete(self, post_id: int, user_id: int) -> bool:
        """DELETE a post of the user."""
        status = await self.pool.execute(
            "DELETE FROM posts WHERE id = $1 AND user_id = $2", post_id, user_id
        )
        return str(status) != "DELETE 0"

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()


async def open_database(database_url: str) -> Database:
    """The driver for ``database_url`` (the contract's plain forms, or with a driver named)."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return await SQLite.open(url.database or "")
    if backend in ("mysql", "mariadb"):
        return await MySQL.open(url)
    if backend == "postgresql":
        return await Postgres.open(url)
    raise ValueError(f"no raw driver for {backend!r}")


def build(opener: Callable[[], Awaitable[Database]]) -> ASGIApp:
    """The ASGI app; ``opener`` makes the database at start-up (in the server's loop)."""
    state: dict[str, Database] = {}

    async def answer(send: Send, status: int, body: bytes = b"") -> None:
        headers = [*JSON, (b"content-length", str(len(body)).encode())] if body else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["db"] = await opener()
                else:
                    await state["db"].close()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        match = PATH.match(scope["path"])
        user = next((v for k, v in scope["headers"] if k == b"x-user-id"), None)
        if match is None or user is None:
            await answer(send, 404, b'{"detail":"Not Found"}')
            return
        db, user_id, method = state["db"], int(user), scope["method"]
        post_id = int(match.group(1)) if match.group(1) else None
        if method in ("POST", "PUT"):
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            text = orjson.loads(b"".join(chunks))["text"]
        if post_id is None and method == "POST":
            await answer(send, 201, orjson.dumps({"post_id": await db.create(user_id, text)}))
        elif post_id is not None and method == "GET":
            post = await db.get(post_id, user_id)
            await answer(send, 404 if post is None else 200, orjson.dumps(post or {}))
        elif post_id is not None and method == "PUT":
            post = await db.update(post_id, user_id, text)
            await answer(send, 404 if post is None else 200, orjson.dumps(post or {}))
        elif post_id is not None and method == "DELETE":
            await answer(send, 204 if await db.delete(post_id, user_id) else 404)
        else:
            await answer(send, 405, b'{"detail":"Method Not Allowed"}')

    return app


def from_env() -> ASGIApp:
    """The factory servers call (``--factory bench.apps.rawdriver:from_env``)."""
    url = os.environ["DATABASE_URL"]
    return build(lambda: open_database(url))
