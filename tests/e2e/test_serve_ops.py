"""Operations under a real ``posts-api serve``: draining on SIGTERM, metrics over two workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from posts_api.ops.metrics import FLUSH_SECONDS
from tests.support import (
    PASSWORD,
    REDIS_DB_SERVERS,
    Server,
    cli_env,
    create_mysql_database,
    drop_mysql_database,
    flush_redis,
    mysql_url,
    new_email,
    redis_url,
)

DRAIN_SECONDS = 3.0


@pytest.fixture(params=[1, 2], ids=["1-worker-sqlite", "2-workers-mariadb-redis"])
def serve_env(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, str], int]]:
    """The environment of a ``serve`` and its worker count: SQLite alone, or MariaDB + Redis."""
    workers = int(request.param)
    if workers == 1:
        yield cli_env(), 1
        return
    flush_redis(REDIS_DB_SERVERS)
    database = create_mysql_database()
    yield cli_env(DATABASE_URL=mysql_url(database), CACHE_URL=redis_url(REDIS_DB_SERVERS)), 2
    drop_mysql_database(database)


def start_slow_signup(port: int) -> tuple[socket.socket, bytes]:
    """Send a sign-up's headers and half its body; return the socket and the other half."""
    body = json.dumps({"email": new_email(), "password": PASSWORD}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=40)
    head = (
        f"POST /auth/signup HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    half = len(body) // 2
    sock.sendall(head + body[:half])
    return sock, body[half:]


def read_status(sock: socket.socket) -> int:
    """The status code of the response on ``sock``."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def refused(url: str) -> bool:
    """True when a new connection to the server fails."""
    try:
        httpx.get(url + "/livez", timeout=1)
    except httpx.HTTPError:
        return True
    return False


def test_sigterm_drains_then_exits_0(tmp_path: Path, serve_env: tuple[dict[str, str], int]) -> None:
    """/readyz fails at once, requests are served through the drain window, the request in
    flight completes, and the process exits 0."""
    env, workers = serve_env
    server = Server(tmp_path, env | {"SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS)}, workers)
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/readyz").status_code == 200
        in_flight, rest = start_slow_signup(server.port)
        time.sleep(0.3)  # the request has reached a worker
        signalled = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGTERM)
        readiness: list[int] = []
        served: list[int] = []
        # Fresh connections, so with two workers both are asked.
        with httpx.Client(
            base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0)
        ) as http:
            while time.monotonic() < signalled + DRAIN_SECONDS - 1:
                readiness.append(http.get("/readyz").status_code)
                served.append(http.get("/livez").status_code)
                served.append(http.get("/health").status_code)
                time.sleep(0.05)
        assert readiness
        assert served
        assert readiness[-1] == 503, readiness
        assert readiness.count(200) <= 2, f"/readyz was not 503 at once: {readiness}"
        assert set(served) == {200}, served
        if workers == 1:  # the process stops listening once the drain is over
            deadline = time.monotonic() + 10
            while not refused(server.url) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert refused(server.url)
        else:  # (the supervisor keeps the socket open until it exits: just wait out the drain)
            time.sleep(max(0.0, signalled + DRAIN_SECONDS + 1 - time.monotonic()))
        assert server.proc.poll() is None, "exited with a request in flight"
        in_flight.sendall(rest)
        assert read_status(in_flight) == 201
        in_flight.close()
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in an exposition (which must parse), 0 when absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_metrics_add_up_across_two_workers(tmp_path: Path) -> None:
    """Whichever worker answers the scrape, it reports the requests of both."""
    flush_redis(REDIS_DB_SERVERS)
    database = create_mysql_database()
    env = cli_env(
        DATABASE_URL=mysql_url(database),
        CACHE_URL=redis_url(REDIS_DB_SERVERS),
        METRICS_ENABLED="true",
        TMPDIR=str(tmp_path),  # where serve makes its metrics directory
    )
    server = Server(tmp_path, env, workers=2)
    try:
        server.wait_ready()
        requests = 60
        with httpx.Client(
            base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0)
        ) as http:
            token = http.post(
                "/auth/signup", json={"email": new_email(), "password": PASSWORD}
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            for _ in range(requests):
                assert http.get("/posts/post/999999", headers=auth).status_code == 404
            # Each worker writes its observations at least every FLUSH_SECONDS: after that
            # wait, every scrape, whichever worker answers it, counts all of them.
            time.sleep(FLUSH_SECONDS + 0.5)
            scrapes = [http.get("/metrics").text for _ in range(6)]
        (metrics_dir,) = tmp_path.glob("posts-api-metrics-*")
        writers = {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}
        assert len(writers) == 2, f"both workers should have counted: {writers}"
        for text in scrapes:
            count = metric_value(
                text,
                "http_requests_total",
                method="GET",
                route="/posts/post/{post_id}",
                status="404",
            )
            assert count == requests
            assert metric_value(text, "login_failures_total") == 0
            assert metric_value(text, "posts_cache_requests_total", result="hit") == 0
        assert server.stop() == 0
        assert not metrics_dir.exists(), "serve removes its metrics directory"
    finally:
        server.stop()
        drop_mysql_database(database)
