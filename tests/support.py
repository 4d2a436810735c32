"""Helpers shared by the tests: real MariaDB/Redis connections, users, tokens, statement counts."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pymysql
import pytest
import redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("TEST_MYSQL_PASSWORD", "")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
# Redis databases the suite owns (flushed before use): in-process apps, then servers.
REDIS_DB_APP = 11
REDIS_DB_SERVERS = 12

PASSWORD = "correct horse battery staple"
SECRET = "test-secret-" + "k" * 48
IN_CI = os.environ.get("CI", "").lower() == "true"


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
    return pymysql.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user=MYSQL_USER,
        password=MYSQL_PASSWORD,
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
    )


def mysql_url(database: str) -> str:
    """The contract's plain ``mysql://`` form for ``database``."""
    cred = MYSQL_USER + (f":{MYSQL_PASSWORD}" if MYSQL_PASSWORD else "")
    return f"mysql://{cred}@{MYSQL_HOST}:{MYSQL_PORT}/{database}"


def redis_url(db: int) -> str:
    """A Redis URL for one of the suite's databases."""
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def create_mysql_database() -> str:
    """Create a fresh, empty utf8mb4 database; skip or fail if the server is away."""
    name = f"posts_api_test_{uuid.uuid4().hex[:10]}"
    try:
        con = mysql_connect()
    except pymysql.Error as exc:
        need_service("MariaDB/MySQL", exc)
    with con.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    con.close()
    return name


def drop_mysql_database(name: str) -> None:
    """Drop a database made by ``create_mysql_database``."""
    con = mysql_connect()
    with con.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    con.close()


def flush_redis(db: int) -> None:
    """Empty one of the suite's Redis databases; skip or fail if Redis is away."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        need_service("Redis", exc)
    finally:
        client.close()


@dataclass
class User:
    """A signed-up user and its token."""

    email: str
    token: str
    id: int

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header for this user."""
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(client: httpx.AsyncClient, email: str | None = None) -> User:
    """Sign up a fresh user through the API."""
    email = email or new_email()
    resp = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    token = resp.json()["access_token"]
    return User(email, token, int(jwt.decode(token, options={"verify_signature": False})["sub"]))


def claims(sub: str = "1", lifetime: int = 600, **overrides: Any) -> dict[str, Any]:
    """A full claim set, with overrides (``None`` removes a claim)."""
    now = int(time.time())
    base: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class StatementLog:
    """Every SQL statement an engine sends, as SQLAlchemy executes it."""

    def __init__(self) -> None:
        """Start empty."""
        self.statements: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    @contextmanager
    def watching(self, engine: AsyncEngine) -> Iterator[list[str]]:
        """Record the statements ``engine`` runs inside the block (returned as a live list)."""
        self.statements = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)
        try:
            yield self.statements
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", self._record)


def verbs(statements: list[str]) -> list[str]:
    """The first word of each statement (``SELECT``, ``INSERT``...), for compact assertions."""
    return [s.split(None, 1)[0].upper() for s in statements]
