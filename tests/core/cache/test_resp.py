"""The cache's Redis client: one pipelined connection, error replies, timeouts, reconnects,
logging in and selecting the database from the URL, the handshake (cancelled, an old server,
the greeting of each new connection)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import hiredis
import pytest
import redis

from posts_api.core.cache.errors import CacheRefused, CacheUnavailable
from posts_api.core.cache.resp import Execute, RespClient
from tests.reliability.helpers import private_redis
from tests.support import REDIS_DB_APP, LocalServer, flush_redis, redis_url


@pytest.fixture
async def client() -> RespClient:
    """A client to the test Redis database, flushed."""
    flush_redis(REDIS_DB_APP)
    return RespClient(redis_url(REDIS_DB_APP), timeout=1.0)


async def test_concurrent_calls_share_one_connection(client: RespClient) -> None:
    """Calls made at the same time are pipelined on one connection, each gets its own replies."""
    await client.execute(("SET", "k", b"v"))
    calls = [client.execute(("CLIENT", "ID"), ("ECHO", str(i))) for i in range(50)]
    answers = await asyncio.gather(*calls)
    assert {client_id for client_id, _ in answers} == {answers[0][0]}
    assert [echo for _, echo in answers] == [str(i).encode() for i in range(50)]
    assert await client.execute(("MGET", "k", "missing")) == [[b"v", None]]
    await client.close()


async def test_an_error_reply_fails_its_call_alone(client: RespClient) -> None:
    await client.execute(("SET", "text", b"not a number"))
    answers: list[list[object] | BaseException] = await asyncio.gather(
        client.execute(("INCR", "text")), client.execute(("GET", "text")), return_exceptions=True
    )  # sent in one write: the second is answered after the first is refused
    assert isinstance(answers[0], CacheRefused)
    assert answers[1] == [b"not a number"]
    assert await client.execute(("PING",)) == [b"PONG"]
    await client.close()


async def test_a_connection_closed_by_redis_is_opened_again(client: RespClient) -> None:
    (first,) = await client.execute(("CLIENT", "ID"))
    admin = redis.Redis.from_url(redis_url(REDIS_DB_APP))
    admin.client_kill_filter(_id=first)
    admin.close()
    await asyncio.sleep(0.1)  # the close reaches this process
    (second,) = await client.execute(("CLIENT", "ID"))
    assert second != first
    await client.close()


async def test_no_answer_in_time_is_unavailable_then_it_reconnects(tmp_path: Path) -> None:
    """A frozen Redis: the call fails after the timeout, every other waiting call too; thawed,
    the next call works on a new connection."""
    with private_redis(tmp_path) as server:
        client = RespClient(server.url, timeout=0.3)
        (first,) = await client.execute(("CLIENT", "ID"))
        server.freeze()
        started = time.monotonic()
        answers = await asyncio.gather(
            client.execute(("PING",)), client.execute(("PING",)), return_exceptions=True
        )
        assert all(isinstance(answer, CacheUnavailable) for answer in answers)
        assert time.monotonic() - started < 1.0
        server.thaw()
        (second,) = await client.execute(("CLIENT", "ID"))
        assert second != first
        await client.close()


async def test_a_restarted_redis_is_reached_again(tmp_path: Path) -> None:
    with private_redis(tmp_path) as server:
        client = RespClient(server.url, timeout=0.5)
        await client.execute(("SET", "k", b"v"))
        server.stop()
        with pytest.raises(CacheUnavailable):
            await client.execute(("GET", "k"))
        server.start()
        assert await client.execute(("GET", "k")) == [None]  # back, empty
        await client.close()


async def test_the_url_logs_in_and_selects_the_database(tmp_path: Path) -> None:
    with private_redis(tmp_path) as server:
        admin = server.client()
        admin.config_set("requirepass", "s3cret:/@")
        admin.close()
        base = f"127.0.0.1:{server.port}"
        client = RespClient(f"redis://:s3cret%3A%2F%40@{base}/3", timeout=0.5)
        await client.execute(("SET", "k", b"in three"))
        await client.close()
        checker = redis.Redis(host="127.0.0.1", port=server.port, db=3, password="s3cret:/@")
        assert checker.get("k") == b"in three"
        checker.close()
        wrong = RespClient(f"redis://:wrong@{base}/3", timeout=0.5)
        with pytest.raises(CacheUnavailable, match="refused the connection"):
            await wrong.execute(("PING",))
        await wrong.close()


async def test_nothing_listening_is_unavailable() -> None:
    client = RespClient("redis://127.0.0.1:1/0", timeout=0.2)
    with pytest.raises(CacheUnavailable, match="cannot connect"):
        await client.execute(("PING",))
    await client.close()


class SilentServer(LocalServer):
    """A TCP server that reads what a client sends and never answers: a Redis that hangs in
    the middle of the handshake. ``closed`` is set once the client's socket is closed."""

    def __init__(self) -> None:
        """Not listening yet: ``start()``."""
        super().__init__()
        self.received = asyncio.Event()
        self.closed = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.read(65536):
            self.received.set()
        while await reader.read(65536):  # until the client closes its end
            pass
        self.closed.set()
        writer.close()


async def test_a_call_cancelled_during_the_handshake_leaves_no_socket() -> None:
    """Cancelled while AUTH and SELECT are on the wire: the new socket is closed, not leaked."""
    server = SilentServer()
    await server.start()
    try:
        client = RespClient(f"redis://:secret@127.0.0.1:{server.port}/2", timeout=60)
        call = asyncio.create_task(client.execute(("PING",)))
        await asyncio.wait_for(server.received.wait(), 10)  # the handshake is on the wire
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(server.closed.wait(), 10)
        await client.close()
    finally:
        await server.stop()


async def test_a_redis_older_than_6_2_is_refused_with_a_reason() -> None:
    """A server that says it is Redis 6.0 (over the real protocol): unavailable, saying why."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                assert command[0].upper() == b"INFO"
                info = b"# Server\r\nredis_version:6.0.16\r\nrun_id:abc\r\n"
                writer.write(b"$%d\r\n%s\r\n" % (len(info), info))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = RespClient(f"redis://127.0.0.1:{port}/0", timeout=5)
        with pytest.raises(CacheUnavailable, match=r"Redis 6\.0\.16 is not supported: 6\.2"):
            await client.execute(("PING",))
        await client.close()
    finally:
        server.close()


async def test_each_new_connection_is_greeted_before_it_is_used(client: RespClient) -> None:
    """``on_connect`` gets the server's run id and runs before any call on the connection."""
    seen: list[str] = []

    async def greet(run_id: str, execute: Execute) -> None:
        seen.append(run_id)
        await execute(("SET", "greeted", run_id))

    client.on_connect = greet
    assert await client.execute(("GET", "greeted")) == [seen[0].encode()]
    await client.close()
    await client.execute(("PING",))
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert len(seen[0]) == 40  # INFO's run_id: 40 hex characters
    await client.close()
