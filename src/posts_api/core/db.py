"""Database plumbing: the declarative ``Base``, the async engine and its session factory.

Round trips are kept at the floor. Every endpoint changes data with a single statement, so the
engine runs in autocommit mode: each statement is its own transaction, committed by the database
before it answers. That removes the BEGIN/COMMIT/ROLLBACK round trips a read or a one-statement
write would otherwise pay; ``skip_autocommit_rollback`` stops SQLAlchemy from sending a ROLLBACK
when a connection goes back to the pool. Code that needs several statements to be atomic must
open a real transaction with ``transaction(sessions)``: it sends ``BEGIN`` and ``COMMIT`` on the
autocommit connection itself, two round trips, where switching the connection's isolation level
would cost a ``SET`` on the way in and another on the way back to the pool.

There is no ping per request either: a connection that turns out to be dead raises a
disconnect error, SQLAlchemy invalidates the pool, the request gets a 503 and the next one
connects afresh.

On PostgreSQL (asyncpg) each statement is prepared once per connection and kept in SQLAlchemy's
per-connection cache, so a request's statement costs one round trip (Bind, Execute, Sync); the
server version, schema and type codecs are read once, when a connection opens. The posts routes'
one-row statements skip the session and run on the driver's connection (``core.driver``), where
asyncpg's own per-connection statement cache keeps them prepared.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import (
    BigInteger,
    CursorResult,
    DateTime,
    Executable,
    Integer,
    MetaData,
    event,
    text,
)
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from posts_api.core.config import Settings

# Explicit constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The declarative base every model inherits; its metadata is what Alembic compares."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The type of ids and of the columns that refer to them. INTEGER on SQLite (its AUTOINCREMENT
# needs exactly that) and MySQL; BIGINT on PostgreSQL, where a query parameter must fit its
# column's type: every id a path accepts (up to 2^63-1) has to bind, and simply match no row.
Id = Integer().with_variant(BigInteger(), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC (microseconds kept) and returned as an aware UTC value.

    Neither SQLite nor MySQL's DATETIME keeps a time zone; this type makes the convention
    explicit, so every timestamp the API returns carries its ``+00:00`` offset.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        """Use ``DATETIME(6)`` on MySQL/MariaDB, whose plain DATETIME drops the microseconds."""
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Convert an aware datetime to naive UTC; refuse naive ones (their zone is unknown)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Label the stored naive value as UTC."""
        return None if value is None else value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime: the one clock every timestamp comes from."""
    return dt.datetime.now(dt.UTC)


def is_sqlite(url: URL) -> bool:
    """True for SQLite URLs (the embedded default)."""
    return url.get_backend_name() == "sqlite"


def is_postgresql(url: URL) -> bool:
    """True for PostgreSQL URLs (asyncpg)."""
    return url.get_backend_name() == "postgresql"


# Prepared statements each connection keeps (asyncpg, through SQLAlchemy). The service sends a
# few dozen distinct statements, so every one stays prepared: a request never pays the extra
# round trip of a Parse; a bound, too, on what each connection holds on the server.
PREPARED_STATEMENT_CACHE_SIZE = 256


# SQLite connections each process keeps (see ``create_engine``).
SQLITE_POOL_SIZE = 1
# SQLite connections a process keeps for reading lists and pages (see ``create_list_engine``).
SQLITE_LIST_READERS = 4


def create_engine(
    settings: Settings, *, autocommit: bool = True, sqlite_connections: int = SQLITE_POOL_SIZE
) -> AsyncEngine:
    """Build the async engine for ``settings.database_url``.

    SQLite: the file's directory is created, and every connection gets WAL journaling,
    foreign keys and a busy timeout. MySQL/MariaDB: utf8mb4, a bounded connect and pool wait time.
    PostgreSQL: the same pool bounds, asyncpg's connect timeout, and prepared statements kept
    per connection. ``autocommit=False`` gives a transactional engine (migrations use it).
    ``sqlite_connections``: how many connections a SQLite engine keeps (and may have open).
    """
    url = settings.database
    timeout = settings.db_timeout_seconds
    # hide_parameters: a logged database error shows the SQL, never the values (emails, hashes).
    options: dict[str, Any] = {"pool_pre_ping": False, "hide_parameters": True}
    if autocommit:
        options |= {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True}
    if is_sqlite(url):
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite has one writer at a time, so a second connection
        # would only wait on the file's lock (in its busy handler's sleeps) instead of in the
        # pool's queue, and each is a thread of its own (aiosqlite). A request waits for it at
        # most DB_TIMEOUT_SECONDS, then answers 503.
        options |= {
            "pool_size": sqlite_connections,
            "max_overflow": 0,
            "pool_timeout": timeout,
            "connect_args": {"timeout": timeout},
        }
    else:
        options |= {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_pool_size,
            "pool_timeout": timeout,
            "pool_recycle": 3600,
        }
        if is_postgresql(url):
            options["connect_args"] = {
                "timeout": timeout,
                "prepared_statement_cache_size": PREPARED_STATEMENT_CACHE_SIZE,
                # Sent in the start-up packet (no round trip): names the service's connections
                # in pg_stat_activity.
                "server_settings": {"application_name": "posts-api"},
            }
        else:
            url = url.update_query_dict({"charset": "utf8mb4"})
            options["connect_args"] = {"connect_timeout": timeout}
    engine = create_async_engine(url, **options)
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(timeout))
    return engine


def create_list_engine(settings: Settings, engine: AsyncEngine) -> AsyncEngine:
    """The engine lists are read through: ``engine`` itself, except on SQLite.

    A list is read in batches of up to a few MiB, each SELECT on a connection taken for it
    alone. On SQLite, where ``engine`` has a single connection for the whole process, those
    reads get ``SQLITE_LIST_READERS`` connections of their own, kept (under WAL a reader never
    waits for the writer), so they run beside the other requests' statements, not in their
    queue.
    """
    if not is_sqlite(engine.url):
        return engine
    return create_engine(settings, sqlite_connections=SQLITE_LIST_READERS)


def _sqlite_pragmas(timeout: float) -> Any:
    """A connect hook that sets WAL, foreign keys and the busy timeout on a SQLite connection."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, fast
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.close()

    return on_connect


async def execute_dml(session: AsyncSession, statement: Executable) -> CursorResult[Any]:
    """Run an INSERT, UPDATE or DELETE and return its cursor result.

    That result carries what a write reports without another query: ``rowcount`` and
    ``inserted_primary_key``.
    """
    result = await session.execute(statement)
    assert isinstance(result, CursorResult)
    return result


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that connect lazily (a cache hit never touches the pool) and keep loaded values."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


# The database rolled a statement back to break a deadlock (or a serialization conflict): the
# statement changed nothing and may be run again. MySQL/MariaDB say so with error 1213,
# PostgreSQL with SQLSTATE 40P01 (or 40001).
DEADLOCK_SQLSTATES = ("40001", "40P01")
MYSQL_DEADLOCK = 1213


def is_deadlock(exc: DBAPIError) -> bool:
    """True when ``exc`` says the statement lost a deadlock and was rolled back whole."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in DEADLOCK_SQLSTATES:
        return True
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] == MYSQL_DEADLOCK


@contextlib.asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose statements run in one transaction: all of them commit, or none.

    ``BEGIN`` (SQLite: ``BEGIN IMMEDIATE``, which takes the write lock at once, so a read inside
    the transaction cannot be overtaken by another writer) and ``COMMIT`` are sent explicitly on
    the autocommit connection, at the databases' default isolation level. On any error, a
    cancelled request's included, the transaction is rolled back; if even that fails the
    connection is discarded, never returned to the pool mid-transaction.
    """
    async with sessions() as session:
        connection = await session.connection()
        sqlite = connection.dialect.name == "sqlite"
        await session.execute(text("BEGIN IMMEDIATE" if sqlite else "BEGIN"))
        try:
            yield session
            await session.execute(text("COMMIT"))
        except BaseException:
            # Shielded: a cancelled request must still roll back, or the connection would go
            # back to the pool in the middle of its transaction.
            with anyio.CancelScope(shield=True):
                try:
                    await session.execute(text("ROLLBACK"))
                except Exception:  # the connection is gone or confused: never reuse it
                    await connection.invalidate()
            raise
