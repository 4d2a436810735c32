"""Fuzzing from our own schema: schemathesis drives the real server with what /openapi.json says.

The server is ``posts-api serve`` on MariaDB and Redis, as deployed, and the schema is the one
it publishes. schemathesis's command line runs every phase (coverage of boundary values, fuzzing,
stateful sequences) over every operation, valid and invalid requests alike, with a signed-up
user's bearer token, and applies all its checks: no 5xx, documented status codes, bodies and
headers that conform to the schema, invalid data rejected, valid data accepted, a missing token
refused. The number of examples is bounded and the seed fixed, so CI replays the same run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.reliability.helpers import REDIS_DB_MODULE, bearer, mariadb_stack, serving
from tests.support import PASSWORD, new_email

EXAMPLES_PER_OPERATION = 60
SEED = 1
OWN_POSTS = 5  # ids 1..5 of a fresh database: the small ids the fuzzer favours find them
OPERATIONS = {
    ("POST", "/auth/signup"),
    ("POST", "/auth/login"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/logout"),
    ("POST", "/auth/logout-all"),
    ("GET", "/auth/me"),
    ("PUT", "/auth/password"),
    ("DELETE", "/auth/me"),
    ("GET", "/posts"),
    ("POST", "/posts/post"),
    ("GET", "/posts/post/{post_id}"),
    ("PUT", "/posts/post/{post_id}"),
    ("DELETE", "/posts/post/{post_id}"),
    ("GET", "/health"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
}
# A schema-valid If-Match may still name a stale version: its 412 is an answer, not a refusal.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
"""


@dataclass(frozen=True)
class Target:
    """The server under fuzzing and its signed-up user's token."""

    url: str
    token: str
    logout_token: str


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A 1-worker server on a fresh MariaDB database and Redis, with a user owning a few posts."""
    with (
        mariadb_stack(REDIS_DB_MODULE) as stack,
        serving(tmp_path_factory.mktemp("fuzz"), stack.env()) as server,
    ):
        signup = httpx.post(
            server.url + "/auth/signup", json={"email": new_email("fuzz"), "password": PASSWORD}
        )
        token = signup.json()["access_token"]
        for i in range(OWN_POSTS):
            created = httpx.post(
                server.url + "/posts/post", json={"text": f"p{i}"}, headers=bearer(token)
            )
            assert created.status_code == 201, created.text
        second = httpx.post(
            server.url + "/auth/signup", json={"email": new_email("fuzz"), "password": PASSWORD}
        )
        yield Target(server.url, token, second.json()["access_token"])


def test_the_schema_declares_every_operation(target: Target) -> None:
    """The fuzzer only sees what the schema lists: every route of the contract must be there."""
    schema = httpx.get(target.url + "/openapi.json").json()
    declared = {
        (method.upper(), path) for path, methods in schema["paths"].items() for method in methods
    }
    assert declared == OPERATIONS


# The log-outs end the token's session: they get a run, and a user, of their own, so the
# other operations are fuzzed with a live session throughout. (PUT /auth/password and
# DELETE /auth/me end it only with the right password, which the fuzzer does not know.)
LOGOUTS = "^/auth/logout"
RUNS = {
    "everything but the log-outs": (["--exclude-path-regex", LOGOUTS], len(OPERATIONS) - 2),
    "the log-outs": (["--include-path-regex", LOGOUTS], 2),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_schemathesis_finds_nothing(target: Target, tmp_path: Path, run: str) -> None:
    """Every phase, every check, a bounded and seeded run: exit status 0 means no failure."""
    selection, selected = RUNS[run]
    token = target.logout_token if run == "the log-outs" else target.token
    if importlib.util.find_spec("schemathesis") is None:
        pytest.fail("schemathesis is not installed: it is one of the dev dependencies")
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        target.url + "/openapi.json",
        *selection,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--workers",
        "1",  # one request at a time: the same sequence on every run
        "--generation-database",
        "none",  # nothing remembered between runs, nothing written to the work tree
        "--request-timeout",
        "30",
        "--no-color",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=400, check=False
    )
    report = result.stdout + result.stderr
    assert f"{selected} selected / {len(OPERATIONS)} total" in report, report[-5000:]
    assert result.returncode == 0, report[-20000:]
