"""What the reliability tests share: real stacks and servers, a private Redis, and the faults.

A *stack* is a fresh MariaDB or PostgreSQL database and one of the suite's Redis databases,
flushed before and after; servers run with ``tests.support.Server`` (``posts-api serve`` in its
own process group).
Every helper that starts something is a context manager or has a ``stop``, so a failing test
still leaves no process and no database behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pymysql
import redis

from tests.proxy import Proxy
from tests.support import (
    DATABASE_SERVERS,
    MYSQL_HOST,
    MYSQL_PORT,
    SECRET,
    Server,
    cli_env,
    flush_redis,
    free_port,
    mysql_connect,
    need_service,
    pg_rows,
    redis_url,
    suite_redis_db,
)

# The Redis databases of this suite: one for a module's long-lived server, one for a test's own
# stack (13 and 14 unless set; 9 and 10 for a second xdist worker). Keys are not namespaced per
# database, so two live stacks never share one.
REDIS_DB_MODULE = suite_redis_db("TEST_REDIS_DB_MODULE", (13, 9))
REDIS_DB_TEST = suite_redis_db("TEST_REDIS_DB_TEST", (14, 10))

# No request may take longer than this, whatever breaks: past it, the client calls it a hang.
REQUEST_TIMEOUT = httpx.Timeout(20.0)
# Fresh connection per request, so the kernel spreads requests over a server's workers.
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)
UNAVAILABLE = {"detail": "Service temporarily unavailable"}


@dataclass(frozen=True)
class Stack:
    """A database (``kind``: ``mysql`` or ``postgres``) and a Redis database that servers of one
    test share."""

    kind: str
    database: str
    cache_url: str

    @property
    def database_url(self) -> str:
        """The database as ``DATABASE_URL`` names it."""
        return DATABASE_SERVERS[self.kind].url(self.database)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """Run one read-only ``query`` on the stack's database and return its rows."""
        if self.kind == "postgres":
            return pg_rows(self.database, query)
        return mariadb_rows(self.database, query)

    def kill_connections(self) -> int:
        """End every connection to the stack's database, as an admin would; return how many."""
        if self.kind == "postgres":
            return kill_pg_connections(self.database)
        return kill_connections(self.database)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a ``posts-api`` process on this stack, with the suite's key.

        ``extra`` sets more variables, or overrides these.
        """
        own = {"DATABASE_URL": self.database_url, "CACHE_URL": self.cache_url}
        return cli_env(**(own | {"SECRET_KEY": SECRET} | extra))


@contextmanager
def database_stack(kind: str, redis_db: int = REDIS_DB_TEST) -> Iterator[Stack]:
    """A fresh ``kind`` database and a flushed Redis database, both cleaned up afterwards."""
    server = DATABASE_SERVERS[kind]
    flush_redis(redis_db)
    database = server.create()
    try:
        yield Stack(kind, database, redis_url(redis_db))
    finally:
        server.drop(database)
        flush_redis(redis_db)


def mariadb_stack(redis_db: int = REDIS_DB_TEST) -> AbstractContextManager[Stack]:
    """A fresh MariaDB database and a flushed Redis database (``database_stack``)."""
    return database_stack("mysql", redis_db)


@contextmanager
def mariadb_user(database: str) -> Iterator[str]:
    """A MariaDB account with a password of its own, allowed ``database`` only; yields its URL.

    The account is dropped afterwards. The password is random, so a test can search for it.
    """
    name = f"posts_rel_{uuid.uuid4().hex[:8]}"
    password = f"db-{uuid.uuid4().hex}"
    admin = mysql_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")  # hex: no quoting
            cur.execute(f"GRANT ALL ON `{database}`.* TO '{name}'@'%'")
        yield f"mysql://{name}:{password}@{MYSQL_HOST}:{MYSQL_PORT}/{database}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        admin.close()


def sqlite_env(path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``posts-api`` process on the SQLite file ``path``."""
    return cli_env(DATABASE_URL=f"sqlite:///{path}", SECRET_KEY=SECRET, **extra)


@contextmanager
def serving(cwd: Path, env: dict[str, str], workers: int = 1) -> Iterator[Server]:
    """A ready server; stopped (SIGTERM, then SIGKILL) however the block ends."""
    server = Server(cwd, env, workers)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def crash(server: Server) -> None:
    """``kill -9`` the server's whole process group (master and workers), and reap it."""
    with suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def read_log(server: Server) -> str:
    """Everything the server wrote on stdout and stderr so far."""
    return server.log.read_text(errors="replace")


def socket_queues(port: int) -> list[tuple[int, int]]:
    """``(tx_queue, rx_queue)`` of every established TCP socket whose local port is ``port``.

    Read from ``/proc/net/tcp``; a server-side ``rx_queue`` of 0 means the server process has
    read every byte its clients sent so far.
    """
    queues = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        established = fields[3] == "01"
        if local_port == port and established:
            tx, rx = (int(part, 16) for part in fields[4].split(":"))
            queues.append((tx, rx))
    return queues


def wait_until_read(port: int, connections: int, timeout: float = 10.0) -> None:
    """Wait until ``connections`` sockets to ``port`` exist and the server has read them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queues = socket_queues(port)
        if len(queues) >= connections and all(rx == 0 for _tx, rx in queues):
            return
        time.sleep(0.05)
    raise AssertionError(f"the server did not read its requests: {socket_queues(port)}")


def kill_connections(database: str) -> int:
    """``KILL`` every MariaDB connection using ``database``, as an admin would; return how many.

    The connections are found in ``information_schema.processlist`` by their current database.
    """
    admin = mysql_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = %s AND id <> CONNECTION_ID()",
                (database,),
            )
            ids = [int(row[0]) for row in cur.fetchall()]
            for connection_id in ids:
                with suppress(pymysql.err.OperationalError):  # it may have closed meanwhile
                    cur.execute(f"KILL {connection_id}")
    finally:
        admin.close()
    return len(ids)


def kill_pg_connections(database: str) -> int:
    """``pg_terminate_backend`` every PostgreSQL connection to ``database``; return how many."""
    rows = pg_rows(
        database,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return sum(1 for (terminated,) in rows if terminated)


def mariadb_rows(database: str, query: str) -> list[tuple[Any, ...]]:
    """Run one read-only ``query`` on ``database`` and return its rows."""
    con = mysql_connect(database)
    try:
        with con.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    finally:
        con.close()


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free port, to stop, freeze and restart at will.

    Nothing is persisted by itself: a restart comes back empty, as a replaced cache node would,
    unless the test ran ``SAVE``: a restart then loads that snapshot (``dump.rdb`` in ``cwd``).
    """

    def __init__(self, cwd: Path, port: int | None = None) -> None:
        """Pick a free port (or take ``port``); ``start()`` runs the server there."""
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Run ``redis-server`` on the port and wait until it answers PING."""
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self.cwd)]
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            need_service("redis-server", exc)
        self.proc = proc
        client = self.client()
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def client(self) -> redis.Redis:
        """A synchronous client to this server."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it; harmless if not running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server cannot handle SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to save anything; reaped."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its connections and its data but answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the frozen server answers again, with its data as it was."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@contextmanager
def private_redis(cwd: Path) -> Iterator[PrivateRedis]:
    """A running ``PrivateRedis``, stopped however the block ends."""
    server = PrivateRedis(cwd)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class BackgroundProxy:
    """``tests.proxy.Proxy`` on an event loop in a thread of its own.

    It keeps forwarding while the test blocks (starting a server, say), and ``cut()`` and
    ``restore()`` can be called from anywhere.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        """Start the loop and listen on a free port, forwarding to the target."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._proxy = Proxy(target_host, target_port)
        self.port = self._proxy.port
        self.restore()

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def restore(self) -> None:
        """Listen again and forward new connections."""
        self._run(self._proxy.restore())

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._run(self._proxy.cut())

    def close(self) -> None:
        """Cut, finish every forwarding task, and stop the loop and its thread."""
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        await self._proxy.cut()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def background_proxy(target_host: str, target_port: int) -> Iterator[BackgroundProxy]:
    """A listening ``BackgroundProxy``, closed however the block ends."""
    proxy = BackgroundProxy(target_host, target_port)
    try:
        yield proxy
    finally:
        proxy.close()


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}
