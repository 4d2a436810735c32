"""Helpers shared by the tests: real MariaDB, PostgreSQL and Redis connections, users, tokens,
statement counts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import asyncpg
import httpx
import jwt
import pymysql
import pytest
import redis
from bench.databases import MySQLServer
from bench.databases import free_port as free_port  # re-exported for the tests' helpers
from fastapi import FastAPI
from sqlalchemy import event

from posts_api.core.driver import MySQLDriver, PostgreSQLDriver, SQLiteDriver

MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("TEST_MYSQL_PASSWORD", "")
MYSQL = MySQLServer(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password=MYSQL_PASSWORD)
PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "root")
PG_PASSWORD = os.environ.get("TEST_PG_PASSWORD", "")
# A database that always exists, to connect to while creating and dropping the suite's own.
PG_ADMIN_DATABASE = os.environ.get("TEST_PG_DATABASE", "test")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))


def suite_redis_db(variable: str, defaults: tuple[int, ...]) -> int:
    """The Redis database ``variable`` names for this pytest process.

    Under pytest-xdist each worker needs databases of its own (they are flushed before use):
    the variable lists one per worker, comma-separated (``TEST_REDIS_DB_APP=11,7``); without
    xdist the first is used.
    """
    given = os.environ.get(variable)
    dbs = tuple(int(db) for db in given.split(",")) if given else defaults
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw"))
    if index >= len(dbs):
        raise pytest.UsageError(
            f"{variable}={given} names {len(dbs)} Redis database(s), but xdist worker {worker} "
            "needs one of its own: list one per worker, comma-separated"
        )
    return dbs[index]


# Redis databases the suite owns (flushed before use): in-process apps, then servers.
REDIS_DB_APP = suite_redis_db("TEST_REDIS_DB_APP", (11, 7))
REDIS_DB_SERVERS = suite_redis_db("TEST_REDIS_DB_SERVERS", (12, 8))

PASSWORD = "correct horse battery staple"
SECRET = "test-secret-" + "k" * 64
IN_CI = os.environ.get("CI", "").lower() == "true"
# The cheapest Argon2id argon2 allows: the suite hashes hundreds of passwords. Production
# defaults are tested in tests/core/test_security.py.
FAST_HASHING: dict[str, Any] = {
    "secret_key": SECRET,
    "argon2_time_cost": 1,
    "argon2_memory_kib": 8,
    "argon2_parallelism": 1,
}

FAST_HASHING_ENV = {
    f"ARGON2_{name.removeprefix('argon2_').upper()}": str(value)
    for name, value in FAST_HASHING.items()
    if name.startswith("argon2_")
}
"""``FAST_HASHING``'s costs as the environment of a served process."""


def new_email(tag: str = "u") -> str:
    """A unique address."""
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def need_service(name: str, error: Exception) -> None:
    """Skip (on a laptop) or fail (in CI) because a real service is not there."""
    message = f"{name} is not reachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run these tests", pytrace=False)
    pytest.skip(message)


def mysql_connect(database: str | None = None) -> pymysql.Connection[Any]:
    """A plain autocommit connection to the test MariaDB/MySQL server."""
    return MYSQL.connect(database)


def mysql_url(database: str, *, port: int = MYSQL_PORT) -> str:
    """The contract's plain ``mysql://`` form for ``database`` (on another port: a proxy)."""
    cred = MYSQL_USER + (f":{MYSQL_PASSWORD}" if MYSQL_PASSWORD else "")
    return f"mysql://{cred}@{MYSQL_HOST}:{port}/{database}"


def redis_url(db: int) -> str:
    """A Redis URL for one of the suite's databases."""
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def create_mysql_database() -> str:
    """Create a fresh, empty utf8mb4 database; skip or fail if the server is away."""
    try:
        return MYSQL.create_database()
    except pymysql.Error as exc:
        need_service("MariaDB/MySQL", exc)
        raise  # need_service never returns


def drop_mysql_database(name: str) -> None:
    """Drop a database made by ``create_mysql_database``."""
    MYSQL.drop_database(name)


def pg_url(database: str, *, port: int = PG_PORT) -> str:
    """The contract's plain ``postgresql://`` form for ``database`` (on another port: a proxy)."""
    cred = PG_USER + (f":{PG_PASSWORD}" if PG_PASSWORD else "")
    return f"postgresql://{cred}@{PG_HOST}:{port}/{database}"


def _in_a_thread(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` on an event loop of its own, so sync and async tests alike may call it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def pg_rows(database: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one ``query`` on the test PostgreSQL server's ``database`` and return its rows.

    Raises ``OSError`` or an ``asyncpg`` error when the server is away.
    """

    async def run() -> list[tuple[Any, ...]]:
        con = await asyncpg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user=PG_USER,
            password=PG_PASSWORD or None,
            database=database,
            timeout=5,
        )
        try:
            return [tuple(row) for row in await con.fetch(query, *args)]
        finally:
            await con.close()

    rows: list[tuple[Any, ...]] = _in_a_thread(run())
    return rows


def create_pg_database() -> str:
    """Create a fresh, empty UTF-8 database; skip or fail if the server is away."""
    name = f"posts_api_test_{uuid.uuid4().hex[:10]}"
    try:
        pg_rows(PG_ADMIN_DATABASE, f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
    except (OSError, asyncpg.PostgresError) as exc:
        need_service("PostgreSQL", exc)
    return name


def drop_pg_database(name: str) -> None:
    """Drop a database made by ``create_pg_database``, closing whatever still uses it."""
    pg_rows(PG_ADMIN_DATABASE, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class LocalServer:
    """A TCP server of the test's own on a free local port: a fake peer, or a proxy that
    records. Subclasses say what a connection gets (``_handle``)."""

    def __init__(self) -> None:
        """Not listening yet: ``start()``."""
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
        raise NotImplementedError


@dataclass(frozen=True)
class DatabaseServer:
    """A kind of database server the suite runs against (``mysql``, ``postgres``).

    ``create()`` makes a fresh database and returns its name (skipping or failing the test when
    the server is away), ``drop(name)`` removes it, ``url(name, port=...)`` is its
    ``DATABASE_URL`` (through a proxy when ``port`` is not the server's own).
    """

    kind: str
    host: str
    port: int
    create: Callable[[], str]
    drop: Callable[[str], None]
    url: Callable[..., str]


DATABASE_SERVERS = {
    "mysql": DatabaseServer(
        "mysql", MYSQL_HOST, MYSQL_PORT, create_mysql_database, drop_mysql_database, mysql_url
    ),
    "postgres": DatabaseServer(
        "postgres", PG_HOST, PG_PORT, create_pg_database, drop_pg_database, pg_url
    ),
}


def flush_redis(db: int) -> None:
    """Empty one of the suite's Redis databases; skip or fail if Redis is away."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        need_service("Redis", exc)
    finally:
        client.close()


class AppClient(httpx.AsyncClient):
    """An HTTP client bound in-process to one app, which it keeps at hand as ``.app``."""

    def __init__(self, app: FastAPI, address: str) -> None:
        """Call ``app`` over ASGI as a client at ``address``."""
        transport = httpx.ASGITransport(app=app, client=(address, 50000))
        super().__init__(transport=transport, base_url="http://test")
        self.app = app


MakeApp = Callable[..., Awaitable[AppClient]]
"""The ``make_app`` fixture: build an app with some settings overridden, return its client."""


@dataclass
class User:
    """A signed-up user and its session's tokens."""

    email: str
    token: str
    id: int
    refresh_token: str = ""

    @property
    def sid(self) -> str:
        """The session id the access token carries."""
        return str(jwt.decode(self.token, options={"verify_signature": False})["sid"])

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header for this user."""
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(client: httpx.AsyncClient, email: str | None = None) -> User:
    """Sign up a fresh user through the API."""
    email = email or new_email()
    resp = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return user_from(email, resp.json())


def user_from(email: str, body: dict[str, Any]) -> User:
    """The ``User`` a token body describes."""
    token = body["access_token"]
    user_id = int(jwt.decode(token, options={"verify_signature": False})["sub"])
    return User(email, token, user_id, body["refresh_token"])


def claims(sub: str, lifetime: int = 600, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A full claim set, with ``changes`` applied (a ``None`` value removes that claim)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": sub,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "sid": uuid.uuid4().hex,
    }
    base.update(changes or {})
    return {k: v for k, v in base.items() if v is not None}


class StatementLog:
    """Every SQL statement an engine sends: as SQLAlchemy executes it, or on the driver itself.

    Statements run on the driver's connection (``posts_api.core.driver``) never reach
    SQLAlchemy's execution events, so the driver adapters' two calls are recorded too.
    """

    def __init__(self) -> None:
        """Start empty."""
        self.statements: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    @contextmanager
    def watching(self, app: FastAPI) -> Iterator[list[str]]:
        """Record the statements ``app`` runs inside the block (returned as a live list).

        Through either of its engines: the main one and the one lists are read through (the
        same engine, except on SQLite).
        """
        self.statements = []
        engines = {app.state.engine.sync_engine, app.state.list_engine.sync_engine}
        for engine in engines:
            event.listen(engine, "before_cursor_execute", self._record)
        try:
            with ExitStack() as stack:
                for driver in (SQLiteDriver, MySQLDriver, PostgreSQLDriver):
                    for name in ("fetch", "execute"):
                        call = getattr(driver, name)
                        stack.enter_context(patch.object(driver, name, self._recording(call)))
                yield self.statements
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", self._record)

    def _recording(self, call: Any) -> Any:
        """``call``, a driver adapter's method, recording the SQL it is given first."""

        async def record(driver: Any, connection: Any, sql: str, parameters: Any) -> Any:
            self.statements.append(sql)
            return await call(driver, connection, sql, parameters)

        return record


def verbs(statements: list[str]) -> list[str]:
    """The first word of each statement (``SELECT``, ``INSERT``...), for compact assertions."""
    return [s.split(None, 1)[0].upper() for s in statements]


def list_read(backend: str) -> list[str]:
    """The statements of a short list read from the database (a list miss, or a streamed list).

    One SELECT per batch of posts (``posts.service.BATCH_ROWS``), on every database.
    """
    return ["SELECT"]


# servers in subprocesses -------------------------------------------------------------------------

POSTS_API = str(Path(sys.executable).parent / "posts-api")
CONTRACT_VARS = ("DATABASE_URL", "CACHE_URL", "SECRET_KEY", "MAX_BODY_BYTES")


def cli_env(**values: str) -> dict[str, str]:
    """The environment for a ``posts-api`` subprocess: ours without the service's variables,
    hashing as cheaply as the in-process apps (``FAST_HASHING``) unless ``values`` say else."""
    env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS}
    return env | FAST_HASHING_ENV | values


class Server:
    """``posts-api serve`` in a subprocess, stopped with SIGTERM at the end."""

    def __init__(self, cwd: Path, env: dict[str, str], workers: int = 1) -> None:
        """Start the server on a free port; ``wait_ready`` waits for /health."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"server-{self.port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [POSTS_API, "serve", "--port", str(self.port), "--workers", str(workers)],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until /health answers 200 (or fail with the server's output)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM the process group and wait; return the exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> Server:
        """Wait until it serves (``with Server(...) as server:``), stopping it if it never does."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop it."""
        self.stop()
