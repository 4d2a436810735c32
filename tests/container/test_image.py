"""The image, built from the Dockerfile as it is, serves the contract on MariaDB + Redis.

It runs with ``--network host`` (the private daemon has no other network) against this machine's
MariaDB (a fresh database) and Redis, answers a sign-up, a post and two reads, reports healthy
through its own HEALTHCHECK, runs as its non-root user, and exits 0 on ``docker stop`` (SIGTERM).
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.container.checks import exercise, health, row_count, wait_for_health
from tests.container.docker import Dockerd
from tests.support import REDIS_DB_SERVERS, SECRET, flush_redis, free_port, mysql_url, redis_url

pytestmark = [pytest.mark.container, pytest.mark.timeout(1200)]


def test_image_serves_on_mariadb_and_redis_and_stops_cleanly_on_sigterm(
    dockerd: Dockerd, image: str, database: str
) -> None:
    flush_redis(REDIS_DB_SERVERS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"posts-api-test-{uuid.uuid4().hex[:8]}"
    dockerd.docker(
        "run", "--detach", "--name", name, "--network", "host",
        "--env", f"DATABASE_URL={mysql_url(database)}",
        "--env", f"CACHE_URL={redis_url(REDIS_DB_SERVERS)}",
        "--env", f"SECRET_KEY={SECRET}",
        "--env", f"HEALTHCHECK_PORT={port}",
        # The image's own check, run every second instead of every ten.
        "--health-interval", "1s", "--health-start-period", "60s",
        image, "serve", "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    try:
        wait_for_health(url, dockerd, name)
        exercise(url)
        assert row_count(database, "posts") == 1
        assert dockerd.docker("exec", name, "id", "-u").strip() == "10001"
        dockerd.docker("exec", name, "touch", "/app/data/writable")
        assert httpx.get(f"{url}/livez", timeout=5).json() == {"status": "ok"}
        assert health(dockerd, name, until="healthy") == "healthy"

        dockerd.docker("stop", "--time", "40", name, timeout=60)
        state = dockerd.inspect(name)
        # 0, not 137 (SIGKILL after the timeout) or 143 (SIGTERM not handled).
        assert state["ExitCode"] == 0, dockerd.logs(name, tail=30)
        assert state["OOMKilled"] is False
    finally:
        dockerd.docker("rm", "--force", name)
