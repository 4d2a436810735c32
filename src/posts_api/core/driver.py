"""SQLAlchemy Core statements compiled once per dialect and run on the driver's own connection.

Why: a one-row request spent about half its CPU in SQLAlchemy's execution layers: the ORM
session, the compiled-cache key built from the statement on every call, and the greenlet
bridge that lets the synchronous core drive an async driver (aiosqlite crossed to its thread
about four times per SELECT that way, once when called directly). The statements themselves
were never the cost: they are written with Core on the models as everywhere else, and each is
compiled once for the engine's dialect (its SQL, its parameter order) the first time it runs.

What stays SQLAlchemy's: the SQL, the types (each parameter and each result column goes
through its type's ``bind_processor``/``result_processor`` for the dialect, so ``UTCDateTime``
and ``PostText`` convert exactly as they do in a session), and the pool (checkout, the SQLite
pragmas of a new connection, the pool's bounds and wait, invalidation). Only the execution goes
to the driver: aiosqlite, asyncmy or asyncpg, on the connection the pool hands out.

Where: the statements of the posts routes (``posts.repository``), lists and pages included.
Multi-statement transactions and the auth statements keep the session (``core.db``).

Errors keep their meaning: a driver error becomes the ``DBAPIError`` SQLAlchemy would have
raised (a lost connection is an ``OperationalError``, so a 503; a broken constraint an
``IntegrityError``), and a connection that failed or was cancelled mid-statement is
invalidated, so the next request connects afresh.

SQLite is the exception to checking out: its one connection for these statements is shared by
every request of the process at once (``DriverPool(..., shared=True)``). aiosqlite runs the
calls made on a connection one after another in the connection's thread, so concurrent
requests queue their statements there, back to back, instead of queueing in the pool for a
connection that each of them holds across two turns of the event loop. Each statement is a
transaction of its own (autocommit) and each call runs whole in that thread, so they cannot
interleave; a cancelled call still completes there. That connection is therefore never
invalidated: a statement that failed (a lock held too long by another process, a disk error)
fails alone, with its 503.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.selectable import ReturnsRows
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import greenlet_spawn

from posts_api.core.errors import says_unavailable

Processor = Callable[[Any], Any] | None

# Statements kept compiled per process: the fixed ones, plus the conditional writes' variants
# (one per number of tags in If-Match); a client sending ever longer lists evicts its own.
COMPILED_CACHE_SIZE = 128


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement as the driver takes it: SQL, parameter order, and each value's conversion."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]
    binds: tuple[Processor, ...]
    results: tuple[Processor, ...]
    returns_rows: bool

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for ``values`` (by bind name), converted for the database.

        Parameters the statement fixed itself (such as a dialect's ``OFFSET 0``) keep their value.
        """
        ordered = (values[name] if name in values else self.fixed[name] for name in self.names)
        return tuple(
            value if bind is None else bind(value)
            for bind, value in zip(self.binds, ordered, strict=True)
        )

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        """A result row converted from the database's values to the columns' Python types."""
        return tuple(
            value if result is None else result(value)
            for result, value in zip(self.results, raw, strict=True)
        )


def compile_for(statement: ReturnsRows, dialect: Dialect) -> Compiled:
    """Compile ``statement`` for ``dialect`` with the processors of its parameters and columns.

    The columns are the SELECT's, or the RETURNING ones (including those the dialect adds
    itself, such as PostgreSQL's ``RETURNING id`` for an INSERT's new primary key).
    """
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    returning = compiled.effective_returning
    columns = returning if returning is not None else statement.exported_columns
    binds = compiled.binds
    return Compiled(
        sql=compiled.string,
        names=names,
        fixed={name: binds[name].value for name in names if not binds[name].required},
        binds=tuple(_bind_processor(binds[name].type, dialect) for name in names),
        results=tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ),
        returns_rows=bool(columns),
    )


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor:
    """How ``dialect`` converts a parameter of ``type_`` (``None``: passed as it is)."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a write without RETURNING reports: rows changed, and the id an INSERT generated."""

    rowcount: int
    lastrowid: int | None


class Driver(Protocol):
    """The two calls a statement needs, on one async driver's connection."""

    errors: tuple[type[BaseException], ...]
    """The exceptions the driver raises for a failed statement or a lost connection."""

    async def fetch(self, connection: Any, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Run a statement that returns rows; all of them."""

    async def execute(self, connection: Any, sql: str, parameters: tuple[Any, ...]) -> Outcome:
        """Run a statement that returns no rows."""

    def classify(self, error: BaseException) -> type[sa_exc.DBAPIError]:
        """The SQLAlchemy error class for a driver error (``OperationalError``: connection lost)."""


class SQLiteDriver:
    """aiosqlite: each call below is one hop to the connection's thread (two for ``execute``)."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    async def fetch(self, connection: Any, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Execute and fetch every row in the connection's thread."""
        return list(await connection.execute_fetchall(sql, parameters))

    async def execute(self, connection: Any, sql: str, parameters: tuple[Any, ...]) -> Outcome:
        """Execute, read the counts, close the cursor."""
        cursor = await connection.execute(sql, parameters)
        try:
            return Outcome(cursor.rowcount, cursor.lastrowid)
        finally:
            await cursor.close()

    def classify(self, error: BaseException) -> type[sa_exc.DBAPIError]:
        """sqlite3's classes map one to one (a locked or unreadable file: ``OperationalError``)."""
        return _by_name(error)


class MySQLDriver:
    """asyncmy: a buffered cursor per statement (the client reads the whole answer at once)."""

    errors: tuple[type[BaseException], ...]

    def __init__(self) -> None:
        """Load asyncmy's error classes (imported here: the driver is optional for SQLite)."""
        from asyncmy import errors

        self.errors = (errors.Error, OSError)

    async def fetch(self, connection: Any, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Execute and return the rows."""
        async with connection.cursor() as cursor:
            await cursor.execute(sql, parameters)
            return list(await cursor.fetchall())

    async def execute(self, connection: Any, sql: str, parameters: tuple[Any, ...]) -> Outcome:
        """Execute; the affected rows and ``LAST_INSERT_ID()`` come back in the OK packet."""
        async with connection.cursor() as cursor:
            rowcount = await cursor.execute(sql, parameters)
            return Outcome(rowcount, cursor.lastrowid)

    def classify(self, error: BaseException) -> type[sa_exc.DBAPIError]:
        """The DB-API classes asyncmy raises map by name; a socket error is a lost connection."""
        if isinstance(error, OSError):
            return sa_exc.OperationalError
        return _by_name(error)


class PostgreSQLDriver:
    """asyncpg: each statement is prepared once per connection (asyncpg's own statement cache).

    With the statement prepared, a call is one round trip (Bind, Execute, Sync).
    """

    errors: tuple[type[BaseException], ...]

    def __init__(self) -> None:
        """Load asyncpg's error classes (imported here: the driver is optional for SQLite)."""
        import asyncpg

        self.asyncpg = asyncpg
        self.errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

    async def fetch(self, connection: Any, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Execute and return the rows (asyncpg records are sequences)."""
        return list(await connection.fetch(sql, *parameters))

    async def execute(self, connection: Any, sql: str, parameters: tuple[Any, ...]) -> Outcome:
        """Execute; the row count is the last word of the command tag (``DELETE 1``)."""
        tag: str = await connection.execute(sql, *parameters)
        return Outcome(int(tag.rsplit(" ", 1)[-1]), None)

    def classify(self, error: BaseException) -> type[sa_exc.DBAPIError]:
        """A closed connection, a socket error or a connection-class SQLSTATE: connection lost."""
        asyncpg = self.asyncpg
        if isinstance(
            error, asyncpg.InterfaceError | asyncpg.PostgresConnectionError | OSError
        ) or says_unavailable(error):
            return sa_exc.OperationalError
        if isinstance(error, asyncpg.IntegrityConstraintViolationError):
            return sa_exc.IntegrityError
        return sa_exc.DBAPIError


def _by_name(error: BaseException) -> type[sa_exc.DBAPIError]:
    """SQLAlchemy's class of the same DB-API name as ``error``'s (``IntegrityError``, ...)."""
    for cls in type(error).__mro__:
        found = getattr(sa_exc, cls.__name__, None)
        if isinstance(found, type) and issubclass(found, sa_exc.DBAPIError):
            return found
    return sa_exc.DBAPIError


def _driver_for(dialect: Dialect) -> Driver:
    """The driver adapter for the engine's dialect."""
    drivers: dict[str, Callable[[], Driver]] = {
        "aiosqlite": SQLiteDriver,
        "asyncmy": MySQLDriver,
        "asyncpg": PostgreSQLDriver,
    }
    return drivers[dialect.driver]()


class DriverPool:
    """Driver connections from the engine's pool, with statements compiled for its dialect.

    One per process (built by ``create_app``), beside the engine whose pool it shares.
    """

    def __init__(self, engine: AsyncEngine, *, shared: bool = False) -> None:
        """Use ``engine``'s pool and dialect.

        ``shared``: take one connection from ``engine`` and run every statement on it,
        concurrently (SQLite; see the module's docstring). ``engine`` is then this pool's own.
        """
        self.engine = engine
        self.driver = _driver_for(engine.dialect)
        self.compiled = functools.lru_cache(maxsize=COMPILED_CACHE_SIZE)(self._compile)
        """``statement`` compiled for this engine's dialect, once (the result is kept)."""
        self.shared = shared
        self._shared_connection: PoolProxiedConnection | None = None
        self._connecting = anyio.Lock()

    def _compile(self, statement: ReturnsRows) -> Compiled:
        """Compile ``statement`` for the engine's dialect.

        Called on first use, after the pool's first connection has told the dialect the
        server's version (MariaDB and SQLite enable RETURNING by version).
        """
        return compile_for(statement, self.engine.dialect)

    def translated(
        self, error: BaseException, *, statement: str | None, lost: bool
    ) -> sa_exc.DBAPIError:
        """The ``DBAPIError`` SQLAlchemy raises for ``error``, a driver's exception.

        ``lost``: the connection was lost (or never made) and is not to be reused.
        """
        kind = self.driver.classify(error)
        return kind(statement, None, error, hide_parameters=True, connection_invalidated=lost)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[DriverConnection]:
        """A pooled connection for a few statements, returned to the pool on exit.

        Checkout and return are the pool's own (one greenlet switch each, no ``Connection``
        object around them); the statements in between go straight to the driver. Returning
        sends nothing: the engine is in autocommit mode and skips the reset's ROLLBACK.
        """
        if self.shared:
            yield DriverConnection(self, await self._shared(), disposable=False)
            return
        pooled = await self._checkout()
        try:
            yield DriverConnection(self, pooled, disposable=True)
        finally:
            # Shielded: a cancelled request must still give its connection back.
            with anyio.CancelScope(shield=True):
                await greenlet_spawn(pooled.close)

    async def close(self) -> None:
        """Give back the shared connection, if one was taken (the lifespan's end)."""
        if self._shared_connection is not None:
            await greenlet_spawn(self._shared_connection.close)
            self._shared_connection = None

    async def _checkout(self) -> PoolProxiedConnection:
        """A connection from the engine's pool; a 503's error if none can be made."""
        try:
            return await self.engine.raw_connection()
        except self.driver.errors as error:  # could not connect
            raise self.translated(error, statement=None, lost=True) from error

    async def _shared(self) -> PoolProxiedConnection:
        """The connection every statement shares, taken from the pool on first use and kept."""
        if self._shared_connection is None:
            async with self._connecting:
                if self._shared_connection is None:
                    self._shared_connection = await self._checkout()
        return self._shared_connection


class DriverConnection:
    """One checked-out connection: runs compiled statements on the driver's connection."""

    def __init__(
        self, pool: DriverPool, pooled: PoolProxiedConnection, *, disposable: bool
    ) -> None:
        """Run statements on the driver's connection behind ``pooled`` (checked out of ``pool``).

        ``disposable``: a connection a failed or cancelled statement may have left in an unknown
        state is invalidated (never the shared SQLite one: its statements run whole).
        """
        self.pool = pool
        self.pooled = pooled
        self.driver_connection = pooled.driver_connection
        self.disposable = disposable

    @property
    def dialect(self) -> Dialect:
        """The engine's dialect (what it supports: ``update_returning``, ...)."""
        return self.pool.engine.dialect

    async def fetch(self, statement: ReturnsRows, **values: Any) -> list[tuple[Any, ...]]:
        """Run a SELECT (or a write with RETURNING) with ``values``; its rows, converted."""
        compiled = self.pool.compiled(statement)
        rows = await self._run(self.pool.driver.fetch, compiled, values)
        return [compiled.row(row) for row in rows]

    async def fetch_one(self, statement: ReturnsRows, **values: Any) -> tuple[Any, ...] | None:
        """The single row a statement returns, or ``None``."""
        rows = await self.fetch(statement, **values)
        return rows[0] if rows else None

    async def execute(self, statement: ReturnsRows, **values: Any) -> Outcome:
        """Run a write without RETURNING; its row count (and an INSERT's new id)."""
        compiled = self.pool.compiled(statement)
        outcome: Outcome = await self._run(self.pool.driver.execute, compiled, values)
        return outcome

    async def insert(self, statement: ReturnsRows, **values: Any) -> Any:
        """Run an INSERT; the new row's primary key (RETURNING where the dialect uses it)."""
        if self.pool.compiled(statement).returns_rows:
            row = await self.fetch_one(statement, **values)
            assert row is not None
            return row[0]
        return (await self.execute(statement, **values)).lastrowid

    async def _run(self, call: Callable[..., Any], compiled: Compiled, values: Any) -> Any:
        """Send one statement; translate the driver's errors as SQLAlchemy would.

        A lost connection, or a statement cut short by cancellation (its answer may still be
        on the way), invalidates the connection: it is closed, never reused.
        """
        parameters = compiled.parameters(values)
        driver = self.pool.driver
        try:
            return await call(self.driver_connection, compiled.sql, parameters)
        except driver.errors as error:
            lost = self.disposable and driver.classify(error) is sa_exc.OperationalError
            if lost:
                await self._invalidate(error)
            raise self.pool.translated(error, statement=compiled.sql, lost=lost) from error
        except BaseException as error:
            if self.disposable:
                await self._invalidate(error)
            raise

    async def _invalidate(self, error: BaseException) -> None:
        """Close this connection for good (shielded: a cancelled request must still do it).

        The pool then forgets it; its return at the end of ``connect`` is a no-op.
        """
        with anyio.CancelScope(shield=True):
            await greenlet_spawn(self.pooled.invalidate, error)
