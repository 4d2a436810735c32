"""The attack surface, black-box: forged tokens, user enumeration, secrets in logs, headers.

One real deployment for the module: ``posts-api serve --workers 2`` on MariaDB and Redis, the
database reached as a user with a password of its own, so the logs can be searched for every
secret the service holds. ``tests/e2e/test_tokens.py`` covers tokens at length in-process; here
each kind of forgery is tried once against the running server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.reliability.helpers import (
    REDIS_DB_MODULE,
    bearer,
    mariadb_stack,
    mariadb_user,
    read_log,
    serving,
)
from tests.support import PASSWORD, SECRET, Server, User, claims, new_email, user_from

WRONG_PASSWORD = "not the password, but close"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Deployment:
    """The module's server, the user it signed up, and the database password it uses."""

    server: Server
    user: User
    database_password: str

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Two workers on MariaDB (as a password-protected user) and Redis, with one user."""
    with mariadb_stack(REDIS_DB_MODULE) as stack, mariadb_user(stack.database) as database_url:
        env = stack.env(DATABASE_URL=database_url)
        with serving(tmp_path_factory.mktemp("attacks"), env, workers=2) as server:
            email = new_email("victim")
            signup = httpx.post(
                server.url + "/auth/signup", json={"email": email, "password": PASSWORD}
            )
            password = make_url(database_url).password
            assert password
            yield Deployment(server, user_from(email, signup.json()), password)


# forged tokens ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    header: dict[str, Any],
    payload: dict[str, Any],
    key: str | None = SECRET,
    digest: Callable[..., Any] = hashlib.sha256,
) -> str:
    """A JWT assembled by hand: any header, any claims, an HMAC with ``key`` (or none)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


HS256 = {"alg": "HS256", "typ": "JWT"}


def forgeries(sub: str, sid: str) -> dict[str, str]:
    """One token per attack, each naming ``sub`` (an existing user) and ``sid`` (their live
    session)."""
    good = claims(sub, changes={"sid": sid})
    genuine = forge(HS256, good)
    head, body, signature = genuine.split(".")
    return {
        "alg none": forge({"alg": "none", "typ": "JWT"}, good, key=None),
        "alg None": forge({"alg": "None", "typ": "JWT"}, good, key=None),
        "alg none, signature kept": forge({"alg": "none"}, good, key=None) + signature,
        "HS384": forge({"alg": "HS384", "typ": "JWT"}, good, digest=hashlib.sha384),
        "HS512": forge({"alg": "HS512", "typ": "JWT"}, good, digest=hashlib.sha512),
        "RS256 header": forge({"alg": "RS256", "typ": "JWT"}, good),
        "wrong key": forge(HS256, good, key=SECRET + "x"),
        "empty key": forge(HS256, good, key=""),
        "expired": forge(HS256, claims(sub, lifetime=-120, changes={"sid": sid})),
        "no exp": forge(HS256, claims(sub, changes={"exp": None, "sid": sid})),
        "no iat": forge(HS256, claims(sub, changes={"iat": None, "sid": sid})),
        "no jti": forge(HS256, claims(sub, changes={"jti": None, "sid": sid})),
        "no sub": forge(HS256, claims(sub, changes={"sub": None, "sid": sid})),
        "no sid (a 1.0 token), real key": forge(HS256, claims(sub, changes={"sid": None})),
        "sid of no session, real key": forge(HS256, claims(sub)),
        "sid not hex, real key": forge(HS256, claims(sub, changes={"sid": "x" * 32})),
        "live sid, another sub, real key": forge(
            HS256, claims(str(int(sub) + 1), changes={"sid": sid})
        ),
        "sub not an id": forge(HS256, claims("admin")),
        "kid header": forge({**HS256, "kid": "../../dev/null"}, good),
        "jku header": forge({**HS256, "jku": "http://127.0.0.1:1/keys"}, good),
        "tampered claims": f"{head}.{_b64(json.dumps(claims('1')).encode())}.{signature}",
        "signature stripped": f"{head}.{body}.",
        "oversized (8 KiB, validly signed)": forge(
            HS256, claims(sub, changes={"pad": "x" * 8192, "sid": sid})
        ),
        "oversized (64 KiB of junk)": "a" * 65536,
        "not a JWT": "abc.def",
    }


def test_a_genuine_forgery_is_accepted(deployment: Deployment) -> None:
    """The control: a token built by ``forge`` with the server's key and all claims works, so
    every 401 below is the server refusing the attack, not a broken forger."""
    user = deployment.user
    token = forge(HS256, claims(str(user.id), changes={"sid": user.sid}))
    resp = httpx.get(deployment.url + "/posts", headers=bearer(token))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("attack", list(forgeries("1", "0" * 32)))
def test_forged_token_is_401(deployment: Deployment, attack: str) -> None:
    token = forgeries(str(deployment.user.id), deployment.user.sid)[attack]
    for method, path in (("GET", "/posts"), ("POST", "/posts/post")):
        resp = httpx.request(
            method, deployment.url + path, headers=bearer(token), json={"text": "x"}
        )
        assert resp.status_code == 401, (attack, method, resp.status_code, resp.text)
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json() == {"detail": "Not authenticated"}


# user enumeration ---------------------------------------------------------------------------------


def test_unknown_email_and_wrong_password_answer_alike(deployment: Deployment) -> None:
    """Same status, same body, same headers (but the date and the request id): nothing tells
    which emails exist."""
    with httpx.Client(base_url=deployment.url) as http:
        wrong = http.post(
            "/auth/login", json={"email": deployment.user.email, "password": WRONG_PASSWORD}
        )
        unknown = http.post(
            "/auth/login", json={"email": new_email("nobody"), "password": WRONG_PASSWORD}
        )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert _headers_but_date(wrong) == _headers_but_date(unknown)


def _headers_but_date(resp: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in resp.headers.items() if k not in ("date", "x-request-id"))


# secrets in logs ----------------------------------------------------------------------------------


def test_logs_hold_no_secrets(deployment: Deployment) -> None:
    """Sign-ups, log-ins good and bad, posts, refusals: the log never shows a secret."""
    email = new_email("logged")
    with httpx.Client(base_url=deployment.url, timeout=20) as http:
        signup = http.post("/auth/signup", json={"email": email, "password": PASSWORD}).json()
        token = signup["access_token"]
        login = http.post("/auth/login", json={"email": email, "password": PASSWORD})
        refresh = {"refresh_token": login.json()["refresh_token"]}
        renewed = http.post("/auth/refresh", json=refresh).json()
        http.post("/auth/refresh", json=refresh)  # reuse: logged as a warning
        http.post("/auth/refresh", json={"refresh_token": "garbage"})
        http.post("/auth/login", json={"email": email, "password": WRONG_PASSWORD})
        http.post("/auth/signup", json={"email": email, "password": PASSWORD})  # 409
        http.post("/auth/signup", json={"email": email, "password": "short"})  # 422
        post = http.post("/posts/post", json={"text": "hello"}, headers=bearer(token))
        http.get("/posts", params={"access_token": token}, headers=bearer(token))
        http.get("/posts", headers=bearer(token[:-2] + "xx"))  # a tampered token: 401
    assert login.status_code == 200
    assert post.status_code == 201
    secrets = {
        "password": PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "short password": '"short"',
        "token": token,
        "login token": login.json()["access_token"],
        "refresh token": signup["refresh_token"],
        "spent refresh token": refresh["refresh_token"],
        "its MAC": refresh["refresh_token"].rsplit(".", 1)[1],
        "rotated refresh token": renewed["refresh_token"],
        "token signature": token.rsplit(".", 1)[1],
        "SECRET_KEY": SECRET,
        "database password": deployment.database_password,
        "email": email,
    }
    log = _wait_for_log(deployment.server, '"path": "/auth/login"', count=2)
    leaked = [name for name, value in secrets.items() if value in log]
    assert leaked == [], f"secrets in the server log: {leaked}"


def _wait_for_log(server: Server, marker: str, count: int) -> str:
    """The log once ``marker`` is in it ``count`` times (records are written as requests end)."""
    deadline = time.monotonic() + 10
    log = read_log(server)
    while log.count(marker) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        log = read_log(server)
    assert log.count(marker) >= count, f"no access records in the log: {log[-2000:]}"
    return log


# headers on every response ------------------------------------------------------------------------


def test_nosniff_on_every_kind_of_answer(deployment: Deployment) -> None:
    """``X-Content-Type-Options: nosniff`` on successes, errors, docs, and the 413."""
    auth = deployment.user.auth
    with httpx.Client(base_url=deployment.url, timeout=20) as http:
        created = http.post("/posts/post", json={"text": "x"}, headers=auth)
        post = f"/posts/post/{created.json()['post_id']}"
        answers = {
            "201": created,
            "200": http.get("/posts", headers=auth),
            "200 health": http.get("/health"),
            "200 docs": http.get("/docs"),
            "200 openapi": http.get("/openapi.json"),
            "401": http.get("/posts"),
            "404": http.get("/posts/post/999999", headers=auth),
            "404 path": http.get("/nowhere"),
            "405": http.patch(post, headers=auth),
            "409": http.post(
                "/auth/signup", json={"email": deployment.user.email, "password": PASSWORD}
            ),
            "413": http.post("/posts/post", content=b"x" * 1_048_577, headers=auth),
            "422": http.post("/posts/post", json={"text": ""}, headers=auth),
            "204": http.delete(post, headers=auth),
            "429": _throttled(http),
        }
    statuses = {name: resp.status_code for name, resp in answers.items()}
    assert statuses == {name: int(name.split()[0]) for name in answers}
    missing = [
        name for name, r in answers.items() if r.headers.get("x-content-type-options") != "nosniff"
    ]
    assert missing == []


def _throttled(http: httpx.Client) -> httpx.Response:
    """Fail log-ins for one (unknown) email until the throttle answers; return that answer."""
    attempt = {"email": new_email("throttled"), "password": WRONG_PASSWORD}
    for _ in range(10):  # LOGIN_MAX_FAILURES_PER_EMAIL, by default
        http.post("/auth/login", json=attempt)
    return http.post("/auth/login", json=attempt)


# bad input ----------------------------------------------------------------------------------------


def test_a_body_that_is_not_utf8_is_malformed_json(deployment: Deployment) -> None:
    """JSON must be UTF-8: other bytes are malformed JSON, a 422 (a 401 first without a token),
    not FastAPI's undocumented 400."""
    body = b'{"text": "caf\xe9"}'
    with httpx.Client(base_url=deployment.url, timeout=20) as http:
        for path in ("/posts/post", "/auth/signup"):
            resp = http.post(path, content=body, headers=deployment.user.auth | JSON)
            assert resp.status_code == 422, (path, resp.status_code, resp.text)
            assert isinstance(resp.json()["detail"], list)
        anonymous = http.post("/posts/post", content=body, headers=JSON)
    assert anonymous.status_code == 401, anonymous.text


def test_405_names_every_method_of_the_path(deployment: Deployment) -> None:
    """``Allow`` lists what the path serves (RFC 9110), not only the first route's method."""
    resp = httpx.patch(deployment.url + "/posts/post/1", headers=deployment.user.auth)
    assert resp.status_code == 405
    allowed = {method.strip() for method in resp.headers["allow"].split(",")}
    assert allowed >= {"GET", "PUT", "DELETE"}, resp.headers["allow"]


def test_garbage_on_the_socket_harms_nothing(deployment: Deployment) -> None:
    """Bytes that are not HTTP get the connection closed (or a 400), and the server serves on."""
    for garbage in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        b"GET / HTTP/9\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", deployment.server.port), timeout=10) as sock:
            sock.sendall(garbage)
            answer = sock.recv(4096)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert httpx.get(deployment.url + "/health").status_code == 200


# stolen tokens --------------------------------------------------------------------------------


def test_a_stolen_refresh_token_replayed_ends_the_session(deployment: Deployment) -> None:
    """Token theft and replay: the thief and the victim both hold one refresh token. Whoever
    refreshes second presents a spent token: 401, and the session (both parties' tokens) ends."""
    with httpx.Client(base_url=deployment.url, timeout=20) as http:
        email = new_email("theft")
        victim = user_from(
            email, http.post("/auth/signup", json={"email": email, "password": PASSWORD}).json()
        )
        stolen = victim.refresh_token
        thief = http.post("/auth/refresh", json={"refresh_token": stolen})
        assert thief.status_code == 200
        replay = http.post("/auth/refresh", json={"refresh_token": stolen})  # the victim's turn
        assert replay.status_code == 401
        assert replay.json() == {"detail": "Invalid refresh token"}
        for token in (thief.json()["access_token"], victim.token):
            assert http.get("/posts", headers=bearer(token)).status_code == 401
        again = http.post("/auth/refresh", json={"refresh_token": thief.json()["refresh_token"]})
        assert again.status_code == 401
        # A stolen access token dies with a logout too.
        login = http.post("/auth/login", json={"email": email, "password": PASSWORD}).json()
        auth = bearer(login["access_token"])
        assert http.get("/posts", headers=auth).status_code == 200
        assert http.post("/auth/logout", headers=auth).status_code == 204
        assert http.get("/posts", headers=auth).status_code == 401
