"""Free ports and throwaway databases: the one copy used by the bench and the test suite.

Only the standard library, PyMySQL and asyncpg (all in the app's locked environment), so
``tests/support.py`` can import it without the bench's own venv. Every database made here has
a fresh name and is meant to be dropped by the caller with the matching ``drop_*`` function.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import pymysql


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_name(prefix: str) -> str:
    """A database name that no other run uses: ``prefix`` and 10 random hex digits."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class MySQLServer:
    """Where a MariaDB/MySQL server listens, and as whom to log in."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    def connect(self, database: str | None = None) -> pymysql.Connection[Any]:
        """A plain autocommit utf8mb4 connection. Raises ``pymysql.Error`` if it cannot connect."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
        )

    def url(self, database: str) -> str:
        """The contract's plain ``mysql://`` URL of ``database`` on this server."""
        cred = self.user + (f":{self.password}" if self.password else "")
        return f"mysql://{cred}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "posts_api_test") -> str:
        """Create a fresh, empty utf8mb4 database and return its name (``pymysql.Error`` if not)."""
        name = fresh_name(prefix)
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(
                    f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        finally:
            con.close()
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists."""
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            con.close()


@dataclass(frozen=True)
class PostgresServer:
    """Where a PostgreSQL server listens, and as whom to log in (trust auth: no password)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    maintenance_db: str = "postgres"  # where CREATE/DROP DATABASE are sent from

    def url(self, database: str) -> str:
        """The contract's plain ``postgresql://`` URL of ``database`` on this server."""
        cred = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql://{cred}@{self.host}:{self.port}/{database}"

    async def _execute(self, sql: str) -> Any:
        import asyncpg

        con = await asyncpg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            database=self.maintenance_db,
            timeout=5,
        )
        try:
            return await con.fetchval(sql)
        finally:
            await con.close()

    def version(self) -> str:
        """The server's ``SHOW server_version``. Raises ``OSError``/asyncpg errors if away."""
        return str(asyncio.run(self._execute("SHOW server_version")))

    def create_database(self, prefix: str = "posts_api_test") -> str:
        """Create a fresh, empty UTF-8 database and return its name."""
        name = fresh_name(prefix)
        asyncio.run(self._execute(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, ending the sessions still connected to it."""
        asyncio.run(self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
