"""Operations: /health, faults of the database and the cache, JSON errors, docs, logs."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from posts_api.core.db import utcnow
from posts_api.posts.models import Post
from tests.proxy import Proxy
from tests.support import (
    PASSWORD,
    REDIS_DB_APP,
    AppClient,
    MakeApp,
    User,
    sign_up,
)

LEAKS = (
    "Traceback",
    "sqlalchemy",
    "asyncmy",
    "asyncpg",
    "aiosqlite",
    "OperationalError",
    "SELECT ",
    "INSERT",
)


def assert_clean_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    """A JSON ``{"detail": ...}`` error with nothing internal in it."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    for leak in LEAKS:
        assert leak not in resp.text
    body: dict[str, Any] = resp.json()
    assert "detail" in body
    return body


async def test_health_ok(client: httpx.AsyncClient) -> None:
    resp = await client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "database": "ok", "cache": "ok"}


async def test_unknown_path_and_method_are_json(client: httpx.AsyncClient) -> None:
    assert_clean_error(await client.get("/nope"), 404)
    assert_clean_error(await client.patch("/posts"), 405)
    assert_clean_error(await client.get("/auth/login"), 405)


async def test_security_header_on_every_response(client: httpx.AsyncClient) -> None:
    for resp in (
        await client.get("/health"),
        await client.get("/nope"),
        await client.get("/posts"),
    ):
        assert resp.headers["x-content-type-options"] == "nosniff"


# the database away -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "database_url",
    [
        "mysql://root@127.0.0.1:1/none",
        "postgresql://root@127.0.0.1:1/none",
        "postgresql://root@nowhere.invalid:5432/none",
    ],
)
async def test_unreachable_database_is_503(make_app: MakeApp, database_url: str) -> None:
    client = await make_app(database_url=database_url, db_timeout_seconds=2)
    body = assert_clean_error(
        await client.post("/auth/signup", json={"email": "a@example.com", "password": PASSWORD}),
        503,
    )
    assert body["detail"] == "Service temporarily unavailable"
    health = await client.get("/health")
    assert_clean_error(health, 503)
    assert health.json()["database"] == "unavailable"
    assert health.json()["cache"] == "ok"


async def test_database_lost_and_back(proxied_client: AppClient, database_proxy: Proxy) -> None:
    """Connections killed under the pool: 503s while away, then recovery with no restart."""
    client = proxied_client
    user = await sign_up(client)
    post_id = (await client.post("/posts/post", json={"text": "kept"}, headers=user.auth)).json()[
        "post_id"
    ]
    await database_proxy.cut()
    assert_clean_error(await client.get(f"/posts/post/{post_id}", headers=user.auth), 503)
    assert_clean_error(await client.post("/posts/post", json={"text": "x"}, headers=user.auth), 503)
    assert (await client.get("/health")).status_code == 503
    await database_proxy.restore()
    statuses = [
        (await client.get(f"/posts/post/{post_id}", headers=user.auth)).status_code
        for _ in range(3)
    ]
    assert statuses[-1] == 200, statuses
    assert statuses.count(503) <= 1, (
        f"more than the first request after recovery failed: {statuses}"
    )
    assert (await client.get("/health")).status_code == 200


# the cache away ----------------------------------------------------------------------------------


async def test_unreachable_cache_serves_from_the_database(make_app: MakeApp) -> None:
    """Reads are answered from the database; a write, which could not be made to show on
    every host, is a 503 that changed nothing."""
    client = await make_app(cache_url="redis://127.0.0.1:1/0")
    user = await sign_up(client)
    refused = await client.post("/posts/post", json={"text": "lost?"}, headers=user.auth)
    assert_clean_error(refused, 503)
    assert (await client.get("/posts", headers=user.auth)).json() == []
    async with client.app.state.sessions() as session:
        await session.execute(
            insert(Post).values(user_id=user.id, text="still here", created_at=utcnow(),
                                updated_at=utcnow())
        )  # fmt: skip
        await session.commit()
    for _ in range(2):
        resp = await client.get("/posts", headers=user.auth)
        assert resp.status_code == 200
        assert [p["text"] for p in resp.json()] == ["still here"]
    health = await client.get("/health")
    assert health.status_code == 503
    assert health.json()["cache"] == "unavailable"
    assert health.json()["database"] == "ok"


async def test_write_during_cache_outage_is_refused_then_not_hidden_after_it(
    make_app: MakeApp, redis_proxy: Proxy
) -> None:
    """A write during the outage is a 503 that changed nothing; retried once the cache is
    back, it shows, and the list cached before the outage does not come back."""
    import asyncio

    client = await make_app(cache_url=f"redis://127.0.0.1:{redis_proxy.port}/{REDIS_DB_APP}")
    user = await sign_up(client)
    await client.post("/posts/post", json={"text": "before"}, headers=user.auth)
    assert len((await client.get("/posts", headers=user.auth)).json()) == 1  # cached
    await redis_proxy.cut()
    resp = await client.post("/posts/post", json={"text": "during"}, headers=user.auth)
    assert_clean_error(resp, 503)
    assert len((await client.get("/posts", headers=user.auth)).json()) == 1  # nothing changed
    await redis_proxy.restore()
    app = client.app
    for _ in range(50):  # the cache is used again once it answers: no restart needed
        if app.state.cache.available:
            break
        await asyncio.sleep(0.1)
    assert app.state.cache.available
    resp = await client.post("/posts/post", json={"text": "during"}, headers=user.auth)
    assert resp.status_code == 201
    texts = [p["text"] for p in (await client.get("/posts", headers=user.auth)).json()]
    assert texts == ["before", "during"]
    assert (await client.get("/health")).status_code == 200


# errors, docs, logs -------------------------------------------------------------------------------


async def test_unexpected_error_is_a_bare_json_500(make_app: MakeApp) -> None:
    client = await make_app()
    app = client.app

    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM internals")

    app.add_api_route("/boom", boom)

    # The server logs the traceback and re-raises to the server; the client sees only JSON.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as raw:
        resp = await raw.get("/boom")
    assert resp.json() == {"detail": "Internal Server Error"}
    assert_clean_error(resp, 500)


async def test_docs_work_offline(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "http://" not in page.text
    assert "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert asset in page.text
        src = page.text.split(asset)[0].rsplit('"', 1)[-1].rsplit("'", 1)[-1] + asset
        assert (await client.get(src)).status_code == 200, src


async def test_openapi_declares_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes.values()) == [
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": schemes[next(iter(schemes))]["description"],
        }
    ]
    name = next(iter(schemes))
    for path in ("/posts", "/posts/post", "/posts/post/{post_id}"):
        for operation in schema["paths"][path].values():
            assert operation["security"] == [{name: []}]
    assert "security" not in schema["paths"]["/auth/login"]["post"]


async def test_request_log_has_no_secrets(
    client: httpx.AsyncClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
        await client.get("/posts?token=abc", headers=user.auth)
    records = [r for r in caplog.records if r.name == "posts_api.access"]
    assert [(r.method, r.path, r.status) for r in records] == [  # type: ignore[attr-defined]
        ("POST", "/auth/login", 200),
        ("GET", "/posts", 200),
    ]
    assert all(r.duration_ms >= 0 for r in records)  # type: ignore[attr-defined]
    text = "".join(str(r.__dict__) for r in caplog.records if r.name.startswith("posts_api"))
    for secret in (PASSWORD, user.token, user.email, "token=abc"):
        assert secret not in text


async def test_cors_is_closed_by_default(client: httpx.AsyncClient) -> None:
    origin = {"Origin": "https://evil.example"}
    resp = await client.get("/health", headers=origin)
    assert "access-control-allow-origin" not in resp.headers
    preflight = await client.options(
        "/posts", headers={**origin, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_allows_configured_origins_only(make_app: MakeApp) -> None:
    client = await make_app(cors_origins="https://app.example, https://admin.example")
    allowed = await client.options(
        "/posts",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


async def test_405_allow_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    resp = await client.patch("/posts/post/1")
    assert_clean_error(resp, 405)
    assert resp.headers["allow"] == "DELETE, GET, PUT"


async def test_body_that_is_not_utf8_is_422_after_the_token(
    client: httpx.AsyncClient, user: User
) -> None:
    body = b'{"text": "\xff\xfe"}'
    json_type = {"content-type": "application/json"}
    resp = await client.post("/posts/post", content=body, headers={**user.auth, **json_type})
    assert_clean_error(resp, 422)
    bad_token = await client.post(
        "/posts/post", content=body, headers={"Authorization": "Bearer x", **json_type}
    )
    assert_clean_error(bad_token, 401)
