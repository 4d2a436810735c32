"""compose.yaml is valid, refuses to start without SECRET_KEY, and its app service runs.

No registry is reachable here, so the MariaDB and Redis services (official images) cannot run,
and the private daemon has no bridge network. The test runs a variant of compose.yaml made from
it: the app service as it is (image, command with its two workers, environment, grace period),
but on the host network, pointed at this machine's MariaDB and Redis, without the published
port (which host networking refuses) and without the services it cannot start.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.container.checks import exercise, row_count, wait_for_health
from tests.container.docker import ROOT, Dockerd
from tests.support import (
    REDIS_DB_SERVERS,
    SECRET,
    flush_redis,
    free_port,
    mysql_url,
    redis_url,
)

pytestmark = [pytest.mark.container, pytest.mark.timeout(1200)]

COMPOSE = str(ROOT / "compose.yaml")
VARIABLES = {"SECRET_KEY": SECRET, "DB_PASSWORD": "not-used-by-this-test"}


def test_compose_file_is_valid_and_requires_a_secret_key(dockerd: Dockerd) -> None:
    dockerd.compose("-f", COMPOSE, "config", "--quiet", env=VARIABLES)
    without_key = {"SECRET_KEY": "", "DB_PASSWORD": VARIABLES["DB_PASSWORD"]}
    with pytest.raises(AssertionError, match="set SECRET_KEY"):
        dockerd.compose("-f", COMPOSE, "config", "--quiet", env=without_key)


def host_network_variant(*, port: int, database: str) -> dict[str, Any]:
    """compose.yaml's app service alone, on the host network, serving on 127.0.0.1:``port``."""
    app = yaml.safe_load(Path(COMPOSE).read_text())["services"]["app"]
    del app["ports"], app["depends_on"]
    app["network_mode"] = "host"
    command = app["command"]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    app["environment"] |= {
        "DATABASE_URL": mysql_url(database),
        "CACHE_URL": redis_url(REDIS_DB_SERVERS),
        "HEALTHCHECK_PORT": str(port),
    }
    return {"services": {"app": app}}


def test_compose_app_serves_with_two_workers_and_stops_cleanly(
    dockerd: Dockerd, image: str, database: str, tmp_path: Path
) -> None:
    flush_redis(REDIS_DB_SERVERS)
    port = free_port()
    variant = tmp_path / "compose.host.yaml"
    variant.write_text(json.dumps(host_network_variant(port=port, database=database)))
    project = [
        *("--project-name", f"postsapi{uuid.uuid4().hex[:8]}"),
        *("--project-directory", str(ROOT), "--file", str(variant)),
    ]
    dockerd.compose(*project, "up", "--detach", "--no-build", "app", env=VARIABLES)
    try:
        container = dockerd.compose(*project, "ps", "--quiet", "app", env=VARIABLES).strip()
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, dockerd, container)
        exercise(url)
        assert row_count(database, "posts") == 1
        logs = dockerd.logs(container)
        assert logs.count("Started server process") >= 2, logs[-3000:]

        dockerd.compose(*project, "stop", "--timeout", "40", "app", env=VARIABLES, timeout=60)
        state = dockerd.inspect(container)
        assert state["ExitCode"] == 0, dockerd.logs(container, tail=30)
    finally:
        dockerd.compose(*project, "down", "--volumes", env=VARIABLES)
