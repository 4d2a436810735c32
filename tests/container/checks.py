"""What the container tests check over HTTP and in MariaDB, for the image and compose alike."""

from __future__ import annotations

import time

import httpx

from tests.container.docker import Dockerd
from tests.support import PASSWORD, mysql_connect, new_email


def row_count(database: str, table: str) -> int:
    """How many rows ``table`` of ``database`` holds, read directly from MariaDB."""
    con = mysql_connect(database)
    try:
        with con.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            (count,) = cur.fetchone() or (0,)
    finally:
        con.close()
    return int(count)


def wait_for_health(url: str, dockerd: Dockerd, container: str, timeout: float = 120) -> None:
    """Block until ``url``/health answers 200; fail with the container's logs otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if dockerd.inspect(container)["Status"] != "running":
            break
        time.sleep(0.5)
    logs = dockerd.logs(container, tail=50)
    raise AssertionError(f"{container} never became healthy:\n{logs}")


def exercise(url: str) -> None:
    """Sign up, post, read the post and the list: the contract's core path over real HTTP."""
    with httpx.Client(base_url=url, timeout=20) as client:
        signup = client.post("/auth/signup", json={"email": new_email(), "password": PASSWORD})
        assert signup.status_code == 201, signup.text
        auth = {"Authorization": f"Bearer {signup.json()['access_token']}"}
        created = client.post("/posts/post", json={"text": "from a container 🐳"}, headers=auth)
        assert created.status_code == 201, created.text
        post_id = created.json()["post_id"]
        read = client.get(f"/posts/post/{post_id}", headers=auth)
        assert read.status_code == 200, read.text
        assert read.json()["text"] == "from a container 🐳"
        listed = client.get("/posts", headers=auth)
        assert listed.status_code == 200, listed.text
        assert [post["post_id"] for post in listed.json()] == [post_id]


def health(dockerd: Dockerd, container: str, *, until: str, timeout: float = 60) -> str:
    """Poll the container's HEALTHCHECK until its log shows ``until``, or the time is up.

    ``until`` is a status (``healthy``) or a piece of a check's output; returns what was reached,
    or the last status.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = dockerd.inspect(container)["Health"]
        assert isinstance(state, dict)
        if state["Status"] == until or any(until in check["Output"] for check in state["Log"]):
            return until
        if time.monotonic() > deadline:
            return str(state["Status"])
        time.sleep(0.5)
