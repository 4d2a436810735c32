"""Hostile input (text that is not text, and worse) in every field, header and parameter: no 5xx.

A JSON string may hold an unpaired surrogate escape (``"\\ud800"``): valid JSON, not Unicode
text. In a string field that is a 422; where a token is expected (``/auth/refresh``) it is the
same 401 as any other unusable token. NUL, overlong values and bytes that are not UTF-8, in a
body, a header or the URL, get a 4xx or are taken as they are.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from tests.support import (
    FAST_HASHING_ENV,
    PASSWORD,
    SECRET,
    AppClient,
    Server,
    User,
    cli_env,
    new_email,
)

JSON = {"content-type": "application/json"}
SURROGATES = ("\\ud800", "\\udfff", "a\\udbff", "\\udc00b", "\\ud800\\ud800")
"""Lone surrogates as JSON escapes (written into the body as they are)."""
INVALID_REFRESH = {"detail": "Invalid refresh token"}


def valid_bodies(user: User, post_id: int) -> dict[tuple[str, str], dict[str, str]]:
    """A body each route that takes one accepts (or refuses for a reason other than its text)."""
    return {
        ("POST", "/auth/signup"): {"email": new_email(), "password": PASSWORD},
        ("POST", "/auth/login"): {"email": user.email, "password": PASSWORD},
        ("POST", "/auth/refresh"): {"refresh_token": user.refresh_token},
        ("PUT", "/auth/password"): {"current_password": PASSWORD, "new_password": PASSWORD},
        ("DELETE", "/auth/me"): {"password": PASSWORD},
        ("POST", "/posts/post"): {"text": "hello"},
        ("PUT", f"/posts/post/{post_id}"): {"text": "hello"},
    }


def routes_with_a_body(client: AppClient, post_id: int) -> set[tuple[str, str]]:
    """``(method, path)`` of every route of the app that reads a JSON body."""
    found = set()
    for context in iter_route_contexts(client.app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.body_field is not None:
            path = route.path_format.replace("{post_id}", str(post_id))
            found |= {(method, path) for method in route.methods or ()}
    return found


def with_field(body: dict[str, str], field: str, raw: str) -> bytes:
    """``body`` as JSON with ``field``'s value replaced by ``raw`` (a JSON string's inside)."""
    marker = "\x00marker\x00"
    text = json.dumps({**body, field: marker})
    return text.replace(json.dumps(marker), f'"{raw}"').encode()


async def test_a_lone_surrogate_in_any_string_field_is_a_422_or_the_tokens_401(
    client: AppClient, user: User
) -> None:
    """Every string field of every body: 422, except the refresh token's 401; nothing changes."""
    post_id = (await client.post("/posts/post", json={"text": "keep"}, headers=user.auth)).json()[
        "post_id"
    ]
    bodies = valid_bodies(user, post_id)
    assert set(bodies) == routes_with_a_body(client, post_id), "a new body: add it here"
    for (method, path), body in bodies.items():
        for field in body:
            for surrogate in SURROGATES:
                for raw in (surrogate, f"{body[field][:4]}{surrogate}{body[field][4:]}"):
                    resp = await client.request(
                        method, path, content=with_field(body, field, raw), headers=user.auth | JSON
                    )
                    where = (method, path, field, raw, resp.text)
                    if field == "refresh_token":
                        assert (resp.status_code, resp.json()) == (401, INVALID_REFRESH), where
                    else:
                        assert resp.status_code == 422, where
                        assert resp.json()["detail"][0]["loc"] == ["body", field], where
    assert (await client.get("/auth/me", headers=user.auth)).status_code == 200
    post = await client.get(f"/posts/post/{post_id}", headers=user.auth)
    assert post.json()["text"] == "keep"


@pytest.mark.parametrize(
    "token",
    [
        "1.\\ud800.0.x",
        "\\ud800",
        "1.0123456789abcdef0123456789abcdef.0.\\udfff",
        "\\ud800" * 600,
        "1.\\u0000.0.x",
        "1." + "\\u00e9" * 40 + ".0.x",
        "\\u0000",
    ],
)
async def test_a_refresh_token_that_is_not_text_is_the_usual_401(
    client: AppClient, token: str
) -> None:
    resp = await client.post(
        "/auth/refresh", content=f'{{"refresh_token": "{token}"}}'.encode(), headers=JSON
    )
    assert (resp.status_code, resp.json()) == (401, INVALID_REFRESH)


async def test_a_real_refresh_token_spoiled_by_a_surrogate_spends_nothing(
    client: AppClient, user: User
) -> None:
    spoiled = user.refresh_token[:-1] + "\\ud800"
    resp = await client.post(
        "/auth/refresh", content=f'{{"refresh_token": "{spoiled}"}}'.encode(), headers=JSON
    )
    assert resp.status_code == 401
    good = await client.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    assert good.status_code == 200, good.text  # not spent, and the session lives on


@pytest.mark.parametrize(
    "raw",
    [
        b'{"text": "\xff"}',
        b'{"text": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8: not UTF-8
        b'{"text": "\xc0\xaf"}',  # an overlong encoding of "/"
        b'{"text": "a\x00"}',  # a raw control character inside a string
        b'{"text": "\xf4\x90\x80\x80"}',  # past U+10FFFF
        b'{"text": "' + b"\\u0000" * 1000 + b'"}',
        b'{"text": "ok", "\\ud800": 1}',
        b'{"\\ud800": "\\ud800"}',
    ],
)
async def test_bytes_that_are_not_text_in_a_body_are_a_4xx(
    client: AppClient, user: User, raw: bytes
) -> None:
    for method, path in (("POST", "/posts/post"), ("POST", "/auth/refresh")):
        resp = await client.request(method, path, content=raw, headers=user.auth | JSON)
        assert resp.status_code < 500, (method, path, resp.text)
        resp.json()  # JSON, whatever the answer


HOSTILE_HEADER_VALUES = (
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b'"\xed\xa0\x80"',
    b'W/"\xff", "p1.1"',
    b'"p1.\xd9\xa3"',  # an Arabic-Indic digit: a digit to str.isdigit, not to the tag's grammar
    b"Bearer \xed\xa0\x80",
    b"Bearer " + b"\xff" * 3000,
    b"a" * 60_000,
    b"\x00",
    b"*, \xff",
)


def hostile_requests(post_id: int) -> Iterator[tuple[str, str, bytes | None]]:
    """Requests of every kind that reads the headers under test."""
    yield "GET", "/posts", None
    yield "GET", "/posts?limit=2", None
    yield "GET", f"/posts/post/{post_id}", None
    yield "PUT", f"/posts/post/{post_id}", b'{"text": "keep"}'
    yield "DELETE", f"/posts/post/{post_id + 10**9}", None
    yield "GET", "/auth/me", None
    yield "POST", "/auth/login", b'{"email": "nobody@example.com", "password": "wrong password"}'


@pytest.mark.parametrize(
    "header", ["authorization", "if-match", "if-none-match", "x-request-id", "x-forwarded-for"]
)
async def test_hostile_header_values_are_never_a_5xx(
    client: AppClient, user: User, header: str
) -> None:
    post_id = (await client.post("/posts/post", json={"text": "keep"}, headers=user.auth)).json()[
        "post_id"
    ]
    for value in HOSTILE_HEADER_VALUES:
        for method, path, body in hostile_requests(post_id):
            headers = [(b"content-type", b"application/json")]
            if header != "authorization":
                headers.append((b"authorization", user.auth["Authorization"].encode()))
            headers.append((header.encode(), value))
            request = client.build_request(method, path, content=body)
            request.headers = httpx.Headers([*headers, (b"host", b"test")])
            resp = await client.send(request)
            where = (header, value[:20], method, path, resp.text[:200])
            assert resp.status_code < 500, where
            if header == "authorization" and path != "/auth/login":
                assert resp.status_code == 401, where
            if header == "x-request-id":
                assert resp.headers["x-request-id"].isascii(), where
    post = await client.get(f"/posts/post/{post_id}", headers=user.auth)
    assert post.json()["text"] == "keep"


@pytest.mark.parametrize(
    "target",
    [
        "/posts/post/%ED%A0%80",
        "/posts/post/%FF",
        "/posts/post/%00",
        "/posts/post/%D9%A3",
        "/posts/post/" + "9" * 5000,
        "/posts?limit=%ED%A0%80",
        "/posts?after=%00",
        "/posts?limit=%D9%A3",
        "/posts?limit=1&limit=%FF",
        "/posts?" + "a=%FF&" * 2000,
    ],
)
async def test_hostile_paths_and_queries_are_a_4xx(
    client: AppClient, user: User, target: str
) -> None:
    resp = await client.get(target, headers=user.auth)
    assert 400 <= resp.status_code < 500 or target.startswith("/posts?a="), resp.text
    assert resp.status_code < 500


# over a real server ------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    """``posts-api serve`` on SQLite, believing ``X-Forwarded-For`` from 127.0.0.1."""
    env = cli_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'hostile.db'}",
        SECRET_KEY=SECRET,
        FORWARDED_ALLOW_IPS="127.0.0.1",
        **FAST_HASHING_ENV,
    )
    with Server(tmp_path, env) as server:
        yield server


def raw_status(port: int, request: bytes) -> int | None:
    """Send ``request`` on a socket; the answer's status, ``None`` if the server hung up."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if not answer:
        return None
    return int(answer.split(b" ", 2)[1])


def test_over_a_real_server_hostile_bytes_are_never_a_5xx(served: Server) -> None:
    """Bytes uvicorn passes on as they are: in the request line, the headers, and the body."""
    with httpx.Client(base_url=served.url, timeout=20) as http:
        user = sign_up_sync(http)
        post_id = http.post("/posts/post", json={"text": "keep"}, headers=user).json()["post_id"]
    auth = user["Authorization"].encode()
    login = b'{"email": "nobody@example.com", "password": "wrong password"}'
    cases: list[tuple[bytes, bytes, list[bytes], bytes]] = []
    for value in HOSTILE_HEADER_VALUES:
        if b"\x00" in value:
            continue  # not a legal header byte: uvicorn answers 400 itself
        for name in (b"Authorization", b"If-Match", b"If-None-Match", b"X-Request-ID"):
            cases.append((b"GET", f"/posts/post/{post_id}".encode(), [name + b": " + value], b""))
        cases.append((b"POST", b"/auth/login", [b"X-Forwarded-For: " + value], login))
        cases.append((b"POST", b"/auth/login", [b"X-Forwarded-For: 1.2.3.4, " + value], login))
    for target in (b"/posts/post/\xff", b"/posts/\xed\xa0\x80", b"/posts?after=\xff", b"/\xc0\xaf"):
        cases.append((b"GET", target, [], b""))
    cases.append((b"POST", b"/auth/refresh", [], b'{"refresh_token": "1.\\ud800.0.x"}'))
    cases.append(
        (b"POST", b"/posts/post", [b"Authorization: " + auth], b'{"text": "\xed\xa0\x80"}')
    )
    for method, target, headers, body in cases:
        lines = [method + b" " + target + b" HTTP/1.1", b"Host: test", b"Connection: close"]
        if b"Authorization" not in b"".join(headers):
            lines.append(b"Authorization: " + auth)
        lines += [*headers, b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
        status = raw_status(served.port, b"\r\n".join(lines) + b"\r\n\r\n" + body)
        assert status is None or status < 500, (method, target, headers, status)
    assert httpx.get(served.url + "/livez").status_code == 200
    log = served.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def sign_up_sync(http: httpx.Client) -> dict[str, Any]:
    """Sign up a new user over HTTP; the Authorization header of its session."""
    resp = http.post("/auth/signup", json={"email": new_email(), "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}
