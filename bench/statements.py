"""Database statements per request, counted in the same run as the load.

Each request of a scenario is sent alone and its statements counted in a window around it:

* **SQLite**: the same requests go to an in-process app built by ``create_app(settings)`` on the
  run's database file, with a SQLAlchemy ``before_cursor_execute`` listener on its engine (every
  statement SQLAlchemy sends, as the served app would send it);
* **MariaDB**: the requests go to the served app itself (all its workers), with the server's
  general log on (``log_output=TABLE``); the rows counted are the ``Query``/``Execute`` commands
  of the bench database's connections in the window. The previous log settings are restored.

Both report the statement verbs too (``SELECT``, ``UPDATE`` ...), so the table can say what a
request costs the database, not only how much.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.databases import MySQLServer
from bench.seed import Account, Api, post_text


class Counter(Protocol):
    """Counts the statements sent between ``start`` and ``stop``."""

    async def start(self) -> None:
        """Open a window."""

    async def stop(self) -> list[str]:
        """Close the window; return the statements seen in it."""


class EngineCounter:
    """Statements one in-process engine executes (SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Listen on ``engine`` from now on."""
        self.seen: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)

    async def start(self) -> None:
        """Forget what came before."""
        self.seen = []

    async def stop(self) -> list[str]:
        """What was executed since ``start``."""
        return list(self.seen)


class GeneralLogCounter:
    """Statements MariaDB received on the connections of one database, via its general log."""

    def __init__(self, database: str, server: MySQLServer) -> None:
        """Count for ``database`` on ``server``; call within ``general_log_on(server)``."""
        self.database = database
        self.con = server.connect()
        self.since: dt.datetime | None = None

    def _now(self) -> dt.datetime:
        with self.con.cursor() as cur:
            cur.execute("SELECT NOW(6)")
            row = cur.fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    async def start(self) -> None:
        """Remember the server's clock."""
        self.since = self._now()

    async def stop(self) -> list[str]:
        """The Query/Execute rows of the database's connections since ``start``."""
        until = self._now()
        with self.con.cursor() as cur:
            cur.execute(
                "SELECT id FROM information_schema.PROCESSLIST WHERE db = %s", (self.database,)
            )
            threads = {row[0] for row in cur.fetchall()}
            cur.execute(
                "SELECT thread_id FROM mysql.general_log WHERE command_type = 'Connect' "
                "AND event_time BETWEEN %s AND %s AND argument LIKE %s",
                (self.since, until, f"% on {self.database} %"),
            )
            threads |= {row[0] for row in cur.fetchall()}
            if not threads:
                return []
            marks = ", ".join(["%s"] * len(threads))  # placeholders only: values are bound
            cur.execute(
                "SELECT argument FROM mysql.general_log WHERE event_time BETWEEN %s AND %s "  # noqa: S608
                f"AND command_type IN ('Query', 'Execute') AND thread_id IN ({marks}) "
                "ORDER BY event_time",
                (self.since, until, *threads),
            )
            rows = cur.fetchall()
        return [_text(row[0]) for row in rows]

    def close(self) -> None:
        """Close the counting connection."""
        self.con.close()


def _text(value: object) -> str:
    """A general-log ``argument`` (a blob: bytes or str, depending on the driver's mood)."""
    if isinstance(value, bytes | bytearray):
        return value.decode(errors="replace")
    return str(value)


GENERAL_LOG_LOCK = "posts-api:general-log"
"""The MariaDB named lock (``GET_LOCK``) that blocks hold while they use the general log."""


@contextmanager
def general_log_on(server: MySQLServer) -> Iterator[None]:
    """Turn MariaDB's general log on (to its table) for the block, then restore it as it was.

    If it was off and not writing to the table before, the rows it gathered are removed. The
    log is the server's, not a connection's: blocks in other processes (a second test run, the
    benchmark) take turns under a named lock, so none turns it off under another, and none
    leaves it on.
    """
    con = server.connect()
    with con.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", (GENERAL_LOG_LOCK, 600))
        row = cur.fetchone()
        if row is None or row[0] != 1:
            con.close()
            raise TimeoutError("another process kept MariaDB's general log for 10 minutes")
    try:
        with con.cursor() as cur:
            cur.execute("SELECT @@global.general_log, @@global.log_output")
            row = cur.fetchone()
            assert row is not None
            was_on, output = int(row[0]), str(row[1])
            cur.execute("SET GLOBAL log_output = 'TABLE'")
            cur.execute("SET GLOBAL general_log = 1")
        yield
    finally:
        with con.cursor() as cur:
            cur.execute("SET GLOBAL general_log = %s", (was_on,))
            cur.execute("SET GLOBAL log_output = %s", (output,))
            if not was_on and "TABLE" not in output.upper():
                cur.execute("TRUNCATE TABLE mysql.general_log")
        con.close()  # releases the lock


def _verb(statement: str) -> str:
    words = statement.split(None, 1)
    return words[0].upper() if words else "?"


Step = Callable[[int], Awaitable[object]]


async def count_all(
    api: Api,
    counter: Counter,
    users: Mapping[str, Sequence[Account]],
    samples: int,
    chars: int,
) -> dict[str, dict[str, object]]:
    """Count each scenario's statements over ``samples`` requests; per request, with verbs.

    For the miss, only the GET is counted (its PUT is sent first, outside the window); for the
    delete, the posts are created first, outside the window.
    """
    hit, miss, writer = users["hit"][0], users["miss"][0], users["writer"][0]
    doomed, login = users["delete"][0], users["login"][0]
    await api.list_body(hit)  # the hit needs a cached entry
    to_delete = [await api.create_post(doomed, post_text(i, chars)) for i in range(samples)]

    async def count(step: Step, before: Step | None = None) -> dict[str, object]:
        seen = []
        for i in range(samples):
            if before is not None:
                await before(i)
            await counter.start()
            await step(i)
            seen.append(await counter.stop())
        return {
            "per_request": sum(len(s) for s in seen) / len(seen),
            "verbs": [_verb(s) for s in seen[-1]],
        }

    async def invalidate(i: int) -> None:
        await api.update_post(miss, miss.post_ids[0], post_text(-i, chars))

    return {
        "get_hit": await count(lambda _: api.list_body(hit)),
        "get_miss": await count(lambda _: api.list_body(miss), before=invalidate),
        "get_one": await count(lambda i: api.get_post(hit, hit.post_ids[i % len(hit.post_ids)])),
        "create": await count(lambda i: api.create_post(writer, post_text(i, chars))),
        "update": await count(
            lambda i: api.update_post(writer, writer.post_ids[0], post_text(i, chars))
        ),
        "delete": await count(lambda i: api.delete_post(doomed, to_delete[i])),
        "login": await count(lambda _: api.log_in(login)),
        "signup": await count(lambda _: api.sign_up(f"count-{uuid.uuid4().hex}@example.com")),
    }
