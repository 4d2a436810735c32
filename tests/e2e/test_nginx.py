"""A real reverse proxy: nginx (Debian's package) in front of two ``posts-api serve`` instances.

As the README's production guide runs it: MariaDB + Redis shared, one ``SECRET_KEY``, nginx
setting ``X-Forwarded-For`` and ``X-Request-ID``, ``FORWARDED_ALLOW_IPS=127.0.0.1`` (nginx's
address). Shows round robin, the login throttle keyed on each client's own address, one
instance drained with no failed request, and request ids passing through. nginx runs from a
temporary directory with its own configuration: nothing of the host's nginx set-up is used.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import (
    PASSWORD,
    REDIS_DB_SERVERS,
    SECRET,
    Server,
    cli_env,
    create_mysql_database,
    drop_mysql_database,
    flush_redis,
    free_port,
    mysql_url,
    need_service,
    new_email,
    redis_url,
)

DRAIN_SECONDS = 3
MAX_FAILURES_PER_ADDRESS = 3

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream posts_api {{
        server 127.0.0.1:{port_a};
        server 127.0.0.1:{port_b};
    }}
    # The client's own request id when it sent one, else nginx's ($request_id, 32 hex digits).
    map $http_x_request_id $forwarded_request_id {{
        default $http_x_request_id;
        "" $request_id;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://posts_api;
            proxy_set_header Host $host;
            # The edge proxy states the address it saw; it does not pass on a client's claim.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $forwarded_request_id;
            proxy_next_upstream error timeout;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """Debian's nginx, or a skip (a fail under CI) when it is not installed."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )
    if found is None:
        need_service("nginx", FileNotFoundError("install Debian's nginx package"))
    assert found is not None
    return found


@dataclass
class Stack:
    """nginx at ``url`` in front of two instances."""

    url: str
    instances: list[Server]
    nginx: subprocess.Popen[bytes]
    dir: Path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Two instances on one MariaDB database and Redis, behind nginx."""
    binary = nginx_binary()
    flush_redis(REDIS_DB_SERVERS)
    database = create_mysql_database()
    env = cli_env(
        DATABASE_URL=mysql_url(database),
        CACHE_URL=redis_url(REDIS_DB_SERVERS),
        SECRET_KEY=SECRET,
        FORWARDED_ALLOW_IPS="127.0.0.1",
        SHUTDOWN_DRAIN_SECONDS=str(DRAIN_SECONDS),
        LOGIN_MAX_FAILURES_PER_ADDRESS=str(MAX_FAILURES_PER_ADDRESS),
    )
    instances: list[Server] = []
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(2):  # one after the other: the first one migrates the database
            instances.append(Server(tmp_path, env))
            instances[-1].wait_ready()
        port = free_port()
        conf_dir = tmp_path / "nginx"
        conf_dir.mkdir()
        (conf_dir / "nginx.conf").write_text(
            NGINX_CONF.format(
                dir=conf_dir, port=port, port_a=instances[0].port, port_b=instances[1].port
            )
        )
        nginx = subprocess.Popen(
            [binary, "-p", str(conf_dir), "-c", "nginx.conf", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(conf_dir / "stderr.log", "wb"),  # noqa: SIM115 - lives as long as nginx
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/livez", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert nginx.poll() is None, (conf_dir / "stderr.log").read_text()
                time.sleep(0.1)
        yield Stack(url, instances, nginx, conf_dir)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for server in instances:
            server.stop()
        drop_mysql_database(database)


def client_at(stack: Stack, address: str) -> httpx.Client:
    """A client connecting to nginx from ``address`` (any 127.x.y.z is this machine)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=stack.url, transport=transport, timeout=30)


def access_lines(server: Server) -> list[str]:
    """The request log lines of one instance."""
    return [line for line in server.log.read_text().splitlines() if "posts_api.access" in line]


def logged(stack: Stack, *texts: str) -> bool:
    """True once each of ``texts`` is in some instance's request log (within 10 s): a request's
    line is written just after its response is sent."""
    deadline = time.monotonic() + 10
    while True:
        lines = "".join(line for s in stack.instances for line in access_lines(s))
        if all(text in lines for text in texts) or time.monotonic() > deadline:
            return all(text in lines for text in texts)
        time.sleep(0.1)


def test_behind_nginx(stack: Stack) -> None:
    ports = {str(s.port) for s in stack.instances}

    # Round robin: both instances answer, as nginx's X-Upstream header and their logs show.
    with client_at(stack, "127.0.0.1") as http:
        upstreams = {http.get("/livez").headers["x-upstream"].rsplit(":", 1)[1] for _ in range(6)}
    assert upstreams == ports

    def both_logged() -> bool:
        return all(any('"/livez"' in line for line in access_lines(s)) for s in stack.instances)

    deadline = time.monotonic() + 10
    while not both_logged() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert both_logged()

    # Request ids: the client's comes back; without one, nginx's own reaches the instance.
    with client_at(stack, "127.0.0.1") as http:
        mine = http.get("/livez", headers={"X-Request-ID": "edge-test-42"})
        assert mine.headers["x-request-id"] == "edge-test-42"
        made = http.get("/livez").headers["x-request-id"]
    assert len(made) == 32
    assert all(c in "0123456789abcdef" for c in made)
    assert logged(stack, '"request_id": "edge-test-42"', f'"request_id": "{made}"')

    # The throttle counts each client's own address, not nginx's.
    with client_at(stack, "127.0.0.1") as http:
        email = new_email()
        assert http.post("/auth/signup", json={"email": email, "password": PASSWORD}).is_success
    wrong = {"email": new_email(), "password": PASSWORD}
    right = {"email": email, "password": PASSWORD}
    with client_at(stack, "127.0.0.2") as attacker, client_at(stack, "127.0.0.3") as user:
        for _ in range(MAX_FAILURES_PER_ADDRESS):
            assert attacker.post("/auth/login", json=wrong).status_code == 401
        assert attacker.post("/auth/login", json=right).status_code == 429
        assert user.post("/auth/login", json=right).status_code == 200
    assert logged(stack, '"client": "127.0.0.2"', '"client": "127.0.0.3"')

    # Draining one instance while clients keep going through nginx: no request fails.
    with client_at(stack, "127.0.0.1") as http:
        token = http.post("/auth/login", json=right).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def client_loop() -> None:
        with client_at(stack, "127.0.0.4") as http:
            while not stop.is_set():
                for path in ("/posts", "/livez"):
                    try:
                        resp = http.get(path, headers=auth)
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        continue
                    answered[0] += 1
                    if resp.status_code != 200:
                        failures.append(f"{path}: {resp.status_code} {resp.text[:200]}")

    loop = threading.Thread(target=client_loop)
    loop.start()
    try:
        time.sleep(0.5)
        drained = stack.instances[0]
        os.killpg(drained.proc.pid, signal.SIGTERM)
        status = drained.proc.wait(DRAIN_SECONDS + 30)
        time.sleep(1)  # and a while after it is gone
    finally:
        stop.set()
        loop.join(30)
    assert status == 0
    assert failures == [], failures[:5]
    assert answered[0] > 20
    drained_log = drained.log.read_text()
    assert "draining" in drained_log
    assert "Traceback" not in drained_log
