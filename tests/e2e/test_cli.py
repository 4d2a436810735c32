"""The ``posts-api`` command, run as a user runs it: migrate, serve, bad configuration."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import (
    DATABASE_SERVERS,
    PASSWORD,
    POSTS_API,
    REDIS_DB_SERVERS,
    Server,
    cli_env,
    flush_redis,
    new_email,
    redis_url,
)

# A server stopped with SIGTERM finishes its requests, then exits 0 or, as uvicorn does, by
# re-raising the signal once shut down (status -15).
STOPPED = (0, -15)


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``posts-api ARGS`` to completion (at most 40 s)."""
    return subprocess.run(
        [POSTS_API, *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=40
    )


def one_error_line(stderr: str) -> str:
    """The single ``posts-api: error:`` line, with no traceback anywhere."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("posts-api: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_migrate_creates_the_schema_in_data(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "posts.db").exists()
    again = run_cli("migrate", cwd=tmp_path)
    assert again.returncode == 0, "migrating twice is harmless"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DATABASE_URL", "nonsense", "DATABASE_URL"),
        ("DATABASE_URL", "oracle://u@h/db", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql://u@h", "DATABASE_URL"),
        ("CACHE_URL", "memcached://x", "CACHE_URL"),
        ("MAX_BODY_BYTES", "-5", "MAX_BODY_BYTES"),
    ],
)
@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_bad_configuration_is_one_clear_line(
    tmp_path: Path, command: str, variable: str, value: str, says: str
) -> None:
    result = run_cli(command, cwd=tmp_path, **{variable: value})
    assert result.returncode != 0
    assert says in one_error_line(result.stderr)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@127.0.0.1:1/db",
        "postgresql://root@127.0.0.1:1/db",
        "postgresql://root@nowhere.invalid:5432/db",
    ],
)
def test_unreachable_database_fails_fast_and_clearly(tmp_path: Path, url: str) -> None:
    started = time.monotonic()
    result = run_cli("serve", "--port", "1", cwd=tmp_path, DATABASE_URL=url)
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "database" in one_error_line(result.stderr)


def test_unwritable_sqlite_path_is_one_line(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, DATABASE_URL="sqlite:////proc/nope/x.db")
    assert result.returncode != 0
    one_error_line(result.stderr)


def test_several_workers_need_a_shared_cache(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "2", cwd=tmp_path)
    assert result.returncode != 0
    assert "CACHE_URL" in one_error_line(result.stderr)


def test_serve_on_the_embedded_default(tmp_path: Path) -> None:
    """No configuration at all: SQLite under ./data, in-process cache, a generated key that
    survives a restart (a token issued before still works after)."""
    server = Server(tmp_path, cli_env())
    try:
        server.wait_ready()
        resp = httpx.post(
            server.url + "/auth/signup", json={"email": new_email(), "password": PASSWORD}
        )
        assert resp.status_code == 201
        token = resp.json()["access_token"]
    finally:
        assert server.stop() in STOPPED
    key = tmp_path / "data" / "secret_key"
    assert key.stat().st_mode & 0o777 == 0o600
    again = Server(tmp_path, cli_env())
    try:
        again.wait_ready()
        listed = httpx.get(again.url + "/posts", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200
    finally:
        again.stop()


@pytest.mark.parametrize("kind", ["mysql", "postgres"])
def test_two_workers_on_a_server_database_and_redis_act_as_one(tmp_path: Path, kind: str) -> None:
    """A write through one worker is seen by the next read, whichever worker answers
    (MariaDB + Redis, PostgreSQL + Redis)."""
    flush_redis(REDIS_DB_SERVERS)
    database_server = DATABASE_SERVERS[kind]
    database = database_server.create()
    server = Server(
        tmp_path,
        cli_env(DATABASE_URL=database_server.url(database), CACHE_URL=redis_url(REDIS_DB_SERVERS)),
        workers=2,
    )
    try:
        server.wait_ready()
        # A fresh connection per request, so the kernel spreads them over both workers.
        with httpx.Client(
            base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0)
        ) as http:
            signup = http.post("/auth/signup", json={"email": new_email(), "password": PASSWORD})
            auth = {"Authorization": f"Bearer {signup.json()['access_token']}"}
            expected: list[str] = []
            ids: list[int] = []
            for i in range(15):
                assert [p["text"] for p in http.get("/posts", headers=auth).json()] == expected
                created = http.post("/posts/post", json={"text": f"p{i}"}, headers=auth)
                ids.append(created.json()["post_id"])
                expected.append(f"p{i}")
                assert [p["text"] for p in http.get("/posts", headers=auth).json()] == expected
                if i % 3 == 2:
                    http.put(f"/posts/post/{ids[0]}", json={"text": f"u{i}"}, headers=auth)
                    expected[0] = f"u{i}"
                    assert [p["text"] for p in http.get("/posts", headers=auth).json()] == expected
            http.delete(f"/posts/post/{ids[1]}", headers=auth)
            del expected[1]
            assert [p["text"] for p in http.get("/posts", headers=auth).json()] == expected
        pids = _worker_pids(server.proc.pid)
        assert len(pids) == 2, f"expected two workers, found {pids}"
    finally:
        assert server.stop() in STOPPED
        database_server.drop(database)
    # Every worker logs each request as a JSON line (logging is set up in each process).
    logged = [line for line in server.log.read_text().splitlines() if "posts_api.access" in line]
    assert sum('"path": "/posts"' in line for line in logged) >= 15


def _worker_pids(parent: int) -> list[int]:
    """The child processes of ``parent`` that run the app (uvicorn's spawned workers)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        and "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()
    ]
