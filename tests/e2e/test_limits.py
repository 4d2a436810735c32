"""The body-size limit and the order of checks: 413, then 401, then 422."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from tests.support import (
    PASSWORD,
    SECRET,
    AppClient,
    MakeApp,
    Server,
    User,
    cli_env,
    new_email,
    user_from,
)

LIMIT = 1_048_576
JSON = {"content-type": "application/json"}


def body_of_size(n: int) -> bytes:
    """A JSON body ``{"text": "aaa..."}`` of exactly ``n`` bytes."""
    prefix, suffix = b'{"text":"', b'"}'
    return prefix + b"a" * (n - len(prefix) - len(suffix)) + suffix


async def chunked(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """Stream ``body`` without a Content-Length (httpx then sends it chunked)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_body_at_the_limit_is_accepted(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post(
        "/posts/post", content=body_of_size(LIMIT), headers={**user.auth, **JSON}
    )
    assert resp.status_code == 201


async def test_one_byte_more_is_413(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post(
        "/posts/post", content=body_of_size(LIMIT + 1), headers={**user.auth, **JSON}
    )
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/json"
    assert "limit" in resp.json()["detail"]


async def test_chunked_upload_over_the_limit_is_413(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post(
        "/posts/post", content=chunked(body_of_size(LIMIT + 1)), headers={**user.auth, **JSON}
    )
    assert "content-length" not in resp.request.headers
    assert resp.status_code == 413
    assert "detail" in resp.json()


async def test_chunked_upload_at_the_limit_is_accepted(
    client: httpx.AsyncClient, user: User
) -> None:
    resp = await client.post(
        "/posts/post", content=chunked(body_of_size(LIMIT)), headers={**user.auth, **JSON}
    )
    assert resp.status_code == 201


async def test_small_chunks_are_counted_together(make_app: MakeApp) -> None:
    """Many small pieces, none large on its own, add up past the limit."""
    client = await make_app(max_body_bytes=100)
    resp = await client.post(
        "/auth/signup", content=chunked(b'{"email": "' + b"a" * 200 + b'"}', size=10), headers=JSON
    )
    assert resp.status_code == 413


@pytest.mark.parametrize("path", ["/auth/signup", "/auth/login"])
async def test_limit_holds_for_auth_too(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.post(path, content=body_of_size(LIMIT + 1), headers=JSON)
    assert resp.status_code == 413


async def test_limit_is_configurable(make_app: MakeApp) -> None:
    client = await make_app(max_body_bytes=1000)
    resp = await client.post("/auth/signup", content=body_of_size(1001), headers=JSON)
    assert resp.status_code == 413
    assert "1000" in resp.json()["detail"]


async def test_put_over_the_limit_is_413_and_changes_nothing(
    client: httpx.AsyncClient, user: User
) -> None:
    post_id = (await client.post("/posts/post", json={"text": "keep"}, headers=user.auth)).json()[
        "post_id"
    ]
    resp = await client.put(
        f"/posts/post/{post_id}", content=body_of_size(LIMIT + 1), headers={**user.auth, **JSON}
    )
    assert resp.status_code == 413
    assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).json()["text"] == "keep"


# order of checks ---------------------------------------------------------------------------------

BAD_TOKEN = {"Authorization": "Bearer not.a.token"}


async def test_oversized_beats_bad_token(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/posts/post", content=body_of_size(LIMIT + 1), headers={**BAD_TOKEN, **JSON}
    )
    assert resp.status_code == 413
    chunked_resp = await client.post(
        "/posts/post", content=chunked(body_of_size(LIMIT + 1)), headers={**BAD_TOKEN, **JSON}
    )
    assert chunked_resp.status_code == 413


@pytest.mark.parametrize(
    "content",
    [b'{"text": 5}', b'{"nope": 1}', b'{"text": ', b"not json", b""],
    ids=["wrong-type", "unknown-field", "truncated", "not-json", "empty"],
)
@pytest.mark.parametrize("token", [None, "Bearer not.a.token"], ids=["no-token", "bad-token"])
async def test_bad_token_beats_bad_body(
    client: httpx.AsyncClient, content: bytes, token: str | None
) -> None:
    headers = {**JSON, **({"Authorization": token} if token else {})}
    for method, path in (
        ("POST", "/posts/post"),
        ("PUT", "/posts/post/1"),
        ("PUT", "/posts/post/abc"),
    ):
        resp = await client.request(method, path, content=content, headers=headers)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.headers["www-authenticate"] == "Bearer"


async def test_good_token_bad_body_is_422(client: httpx.AsyncClient, user: User) -> None:
    resp = await client.post("/posts/post", content=b'{"text": ', headers={**user.auth, **JSON})
    assert resp.status_code == 422


# routes that read no body --------------------------------------------------------------------

OVERSIZED = 2 * LIMIT  # the 2 MiB


def every_route(app: FastAPI, post_id: int) -> Iterator[tuple[str, str]]:
    """``(method, path)`` of every route of ``app``, ``{post_id}`` (any parameter) filled."""
    for route in iter_route_contexts(app.routes):
        assert route.path_format is not None
        path = re.sub(r"\{[^}]+\}", str(post_id), route.path_format)
        for method in sorted(route.methods or {"GET"}):
            yield method, path


async def assert_nothing_happened(client: httpx.AsyncClient, user: User, post_id: int) -> None:
    """The user's session, account and post are as they were."""
    me = await client.get("/auth/me", headers=user.auth)
    assert me.status_code == 200, me.text
    post = await client.get(f"/posts/post/{post_id}", headers=user.auth)
    assert post.json()["text"] == "keep"


async def test_an_undeclared_body_over_the_limit_is_413_on_every_route(
    client: AppClient, user: User
) -> None:
    """Every route and method, the ones that read no body included: 413, and no effect."""
    post_id = (await client.post("/posts/post", json={"text": "keep"}, headers=user.auth)).json()[
        "post_id"
    ]
    for method, path in every_route(client.app, post_id):
        resp = await client.request(
            method, path, content=chunked(b"x" * OVERSIZED), headers={**user.auth, **JSON}
        )
        assert "content-length" not in resp.request.headers
        assert resp.status_code == 413, (method, path, resp.status_code, resp.text)
        if method != "HEAD":
            assert "limit" in resp.json()["detail"]
    await assert_nothing_happened(client, user, post_id)


@pytest.mark.parametrize("path", ["/auth/logout", "/auth/logout-all"])
async def test_a_logout_with_an_oversized_body_ends_nothing(
    client: httpx.AsyncClient, user: User, path: str
) -> None:
    resp = await client.post(path, content=chunked(b"x" * OVERSIZED), headers=user.auth)
    assert resp.status_code == 413
    assert (await client.get("/posts", headers=user.auth)).status_code == 200
    assert (await client.post(path, headers=user.auth)).status_code == 204  # the real one


async def test_an_oversized_body_beats_a_bad_token_on_routes_that_read_none(
    client: httpx.AsyncClient,
) -> None:
    for method, path in (("GET", "/posts"), ("GET", "/auth/me"), ("POST", "/auth/logout")):
        resp = await client.request(
            method, path, content=chunked(b"x" * OVERSIZED), headers=BAD_TOKEN
        )
        assert resp.status_code == 413, (method, path)


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/posts"), ("GET", "/auth/me"), ("GET", "/livez")]
)
async def test_an_undeclared_body_at_the_limit_passes_on_routes_that_read_none(
    client: httpx.AsyncClient, user: User, method: str, path: str
) -> None:
    resp = await client.request(method, path, content=chunked(b"x" * LIMIT), headers=user.auth)
    assert resp.status_code == 200, resp.text


# over a real server ------------------------------------------------------------------------------


def raw_request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, bytes]:
    """Send one request on a socket, the body chunked (64 KiB chunks); its status and body.

    The body is written by a thread while this one reads the answer, as a real client would:
    the server may answer (and close) before it has read everything.
    """
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append("Transfer-Encoding: chunked")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def write() -> None:
        try:
            sock.sendall(head)
            if body is None:
                return
            for start in range(0, len(body), 65536):
                piece = body[start : start + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed: the rest is not wanted
            pass

    writer = threading.Thread(target=write)
    writer.start()
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass  # the server closed with the body unread: what came before the reset counts
    finally:
        writer.join()
        sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture
def served(migrated: dict[str, Any], tmp_path: Path) -> Iterator[Server]:
    """``posts-api serve`` (uvicorn, httptools) on the session's database and cache."""
    env = cli_env(
        DATABASE_URL=migrated["database_url"], CACHE_URL=migrated["cache_url"], SECRET_KEY=SECRET
    )
    with Server(tmp_path, env) as server:
        yield server


def test_over_a_real_server_chunked_bodies_are_413_on_routes_that_read_none(
    served: Server,
) -> None:
    """Raw chunked HTTP/1.1 on a socket: 413 before anything else, and the logout not done."""
    with httpx.Client(base_url=served.url, timeout=30) as http:
        email = new_email()
        signup = http.post("/auth/signup", json={"email": email, "password": PASSWORD})
        user = user_from(email, signup.json())
        post_id = http.post("/posts/post", json={"text": "keep"}, headers=user.auth).json()[
            "post_id"
        ]
        oversized = b"x" * OVERSIZED
        for method, path in (
            ("GET", "/posts"),
            ("GET", "/auth/me"),
            ("POST", "/auth/logout"),
            ("GET", "/livez"),
            ("DELETE", f"/posts/post/{post_id}"),
            ("POST", "/posts/post"),
        ):
            status, body = raw_request(served.port, method, path, user.auth, oversized)
            assert status == 413, (method, path, status, body[:200])
        assert http.get("/auth/me", headers=user.auth).status_code == 200  # still logged in
        assert http.get(f"/posts/post/{post_id}", headers=user.auth).json()["text"] == "keep"
        for path in ("/livez", "/posts", "/auth/me"):
            status, body = raw_request(served.port, "GET", path, user.auth, b"x" * LIMIT)
            assert status == 200, (path, status, body[:200])
        assert raw_request(served.port, "GET", "/livez", {}, None)[0] == 200
