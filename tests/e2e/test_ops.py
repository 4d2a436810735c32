"""Operations 1.1 in-process: probes, request ids, metrics, trusted proxies (client address)."""

from __future__ import annotations

import logging
import random
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from posts_api.cli import proxy_options
from posts_api.core.config import Settings
from posts_api.ops import metrics
from posts_api.ops.middleware import UNMATCHED
from tests.e2e.test_operations import assert_clean_error
from tests.proxy import Proxy
from tests.support import PASSWORD, AppClient, MakeApp, sign_up

# probes ------------------------------------------------------------------------------------------


async def test_livez_and_readyz_ok(client: httpx.AsyncClient) -> None:
    for path in ("/livez", "/readyz"):
        resp = await client.get(path)
        assert (resp.status_code, resp.json()) == (200, {"status": "ok"})


async def test_readyz_is_503_while_draining(make_app: MakeApp) -> None:
    client = await make_app()
    client.app.state.lifecycle.draining = True
    assert_clean_error(await client.get("/readyz"), 503)
    assert (await client.get("/livez")).status_code == 200
    assert (await client.get("/health")).status_code == 200


async def test_readyz_ignores_an_unreachable_cache(make_app: MakeApp) -> None:
    client = await make_app(cache_url="redis://127.0.0.1:1/0")
    assert (await client.get("/health")).status_code == 503
    assert (await client.get("/readyz")).status_code == 200


async def test_readyz_is_503_while_the_database_is_away(
    proxied_client: AppClient, database_proxy: Proxy
) -> None:
    client = proxied_client
    assert (await client.get("/readyz")).status_code == 200
    await database_proxy.cut()
    body = assert_clean_error(await client.get("/readyz"), 503)
    assert body == {"detail": "unavailable: database"}
    assert (await client.get("/livez")).status_code == 200
    await database_proxy.restore()
    statuses = [(await client.get("/readyz")).status_code for _ in range(3)]
    assert statuses[-1] == 200, statuses


# request ids -------------------------------------------------------------------------------------


async def test_valid_request_id_is_kept(client: httpx.AsyncClient) -> None:
    for rid in ("abc", "A.b_c-9", "x" * 128):
        resp = await client.get("/livez", headers={"X-Request-ID": rid})
        assert resp.headers["x-request-id"] == rid


async def test_invalid_request_id_is_replaced_by_a_unique_one(client: httpx.AsyncClient) -> None:
    seen = set()
    invalid = [b"", b"x" * 129, b"has space", b"semi;colon", "é".encode()]
    for rid in [*invalid, None]:
        headers: dict[bytes, bytes] = {} if rid is None else {b"X-Request-ID": rid}
        got = (await client.get("/livez", headers=headers)).headers["x-request-id"]
        assert got.encode() != rid
        assert 1 <= len(got) <= 128
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in got), got
        seen.add(got)
    for _ in range(50):
        seen.add((await client.get("/nope")).headers["x-request-id"])
    assert len(seen) == 56


async def test_errors_carry_the_request_id(make_app: MakeApp) -> None:
    client = await make_app(max_body_bytes=100)
    rid = {"X-Request-ID": "req-413"}
    too_big = await client.post("/posts/post", content=b"x" * 1000, headers=rid)
    assert (too_big.status_code, too_big.headers["x-request-id"]) == (413, "req-413")

    async def boom() -> None:
        raise RuntimeError("unexpected")

    client.app.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as raw:
        resp = await raw.get("/boom", headers={"X-Request-ID": "req-500"})
    assert (resp.status_code, resp.headers["x-request-id"]) == (500, "req-500")
    assert resp.headers["x-content-type-options"] == "nosniff"


async def test_request_id_is_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        kept = await client.get("/livez", headers={"X-Request-ID": "trace-1"})
        made = await client.get("/livez", headers={"X-Request-ID": "bad id"})
    records = [r for r in caplog.records if r.name == "posts_api.access"]
    logged = [r.request_id for r in records]  # type: ignore[attr-defined]
    assert logged == [kept.headers["x-request-id"], made.headers["x-request-id"]]
    assert logged[0] == "trace-1"


# metrics -----------------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and labels (parsing it checks its syntax)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """One sample's value, 0 when absent."""
    return parsed.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_is_404_when_disabled(client: httpx.AsyncClient) -> None:
    assert_clean_error(await client.get("/metrics"), 404)


async def test_metrics_parse_with_templates_and_domain_counters(make_app: MakeApp) -> None:
    client = await make_app(metrics_enabled=True, login_max_failures_per_email=2)
    first = await client.get("/metrics")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/plain")
    before = samples(first.text)
    for name in ("login_failures_total", "login_throttled_total", "refresh_token_reuse_total"):
        assert (name, frozenset()) in before, f"{name} is not exposed from the start"
    for result in ("hit", "miss"):
        assert ("posts_cache_requests_total", frozenset({("result", result)})) in before

    user = await sign_up(client)
    post_id = (await client.post("/posts/post", json={"text": "a"}, headers=user.auth)).json()[
        "post_id"
    ]
    for _ in range(2):
        assert (await client.get(f"/posts/post/{post_id}", headers=user.auth)).status_code == 200
        assert (await client.get("/posts", headers=user.auth)).status_code == 200
    await client.get("/no/such/path/4242")
    await client.request("BREW", "/posts")
    wrong = {"email": user.email, "password": PASSWORD + "x"}
    statuses = [(await client.post("/auth/login", json=wrong)).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    spent = {"refresh_token": user.refresh_token}
    assert (await client.post("/auth/refresh", json=spent)).status_code == 200
    assert (await client.post("/auth/refresh", json=spent)).status_code == 401  # reuse

    after = samples((await client.get("/metrics")).text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/posts/post/{post_id}"
    assert grew("http_requests_total", method="GET", route=route, status="200") == 2
    assert grew("http_request_duration_seconds_count", method="GET", route=route) == 2
    assert grew("http_requests_total", method="GET", route=UNMATCHED, status="404") == 1
    assert grew("http_requests_total", method="OTHER", route="/posts", status="405") == 1
    assert grew("http_requests_total", method="GET", route="/metrics", status="200") == 1
    assert grew("posts_cache_requests_total", result="miss") == 1
    assert grew("posts_cache_requests_total", result="hit") == 1
    assert grew("login_failures_total") == 2
    assert grew("login_throttled_total") == 1
    assert grew("refresh_token_reuse_total") == 1
    routes = {v for (_, ls) in after for (k, v) in ls if k == "route"}
    templates = set(client.app.openapi()["paths"])
    assert routes <= templates | {UNMATCHED}, routes - templates
    methods = {v for (_, ls) in after for (k, v) in ls if k == "method"}
    assert "BREW" not in methods


async def test_nothing_is_recorded_when_disabled(make_app: MakeApp) -> None:
    client = await make_app(metrics_enabled=False, login_max_failures_per_email=1)
    before = samples(metrics.exposition(metrics.REGISTRY)[0].decode())
    user = await sign_up(client)
    await client.get("/posts", headers=user.auth)
    wrong = {"email": user.email, "password": PASSWORD + "x"}
    for _ in range(2):
        await client.post("/auth/login", json=wrong)
    assert samples(metrics.exposition(metrics.REGISTRY)[0].decode()) == before


# client address behind trusted proxies -----------------------------------------------------------


def behind(app: Any, settings: Settings, peer: str) -> httpx.AsyncClient:
    """A client at ``peer`` calling ``app`` wrapped as ``serve`` wraps it for these settings."""
    options = proxy_options(settings)
    asgi = app
    if options["proxy_headers"]:
        asgi = ProxyHeadersMiddleware(app, trusted_hosts=options["forwarded_allow_ips"])
    transport = httpx.ASGITransport(app=asgi, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("allow", "peer", "seen"),
    [
        ("", "PROXY.1", "PROXY.1"),  # empty: trust nobody
        ("PROXY.1", "PROXY.1", "CLIENT"),
        ("PROXY.0/24", "PROXY.1", "CLIENT"),
        ("PROXY.1", "PROXY.2", "PROXY.2"),  # not a listed proxy: its header is ignored
    ],
)
async def test_forwarded_address_trusted_only_from_listed_proxies(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture, allow: str, peer: str, seen: str
) -> None:
    # Fresh addresses per run: the per-address counters live in a Redis shared by runs.
    proxy_net = f"10.{random.randrange(256)}.{random.randrange(256)}"
    client_ip = f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"
    allow, peer, seen = (
        x.replace("PROXY", proxy_net).replace("CLIENT", client_ip) for x in (allow, peer, seen)
    )
    client = await make_app(forwarded_allow_ips=allow, login_max_failures_per_address=2)
    settings: Settings = client.app.state.settings
    user = await sign_up(client)
    forwarded = {"X-Forwarded-For": client_ip}
    async with behind(client.app, settings, peer) as http:
        with caplog.at_level(logging.INFO):
            await http.get("/livez", headers=forwarded)
        logged = [r for r in caplog.records if r.name == "posts_api.access"]
        assert logged[-1].client == seen  # type: ignore[attr-defined]
        # The throttle counts failures against the same address.
        for _ in range(2):
            wrong = {"email": f"x{_}" + user.email, "password": PASSWORD}
            assert (
                await http.post("/auth/login", json=wrong, headers=forwarded)
            ).status_code == 401
        again = await http.post(
            "/auth/login", json={"email": user.email, "password": PASSWORD}, headers=forwarded
        )
        assert again.status_code == 429
        other = {"X-Forwarded-For": f"198.19.{random.randrange(256)}.7"}
        elsewhere = await http.post(
            "/auth/login", json={"email": user.email, "password": PASSWORD}, headers=other
        )
        # Another client behind a trusted proxy is its own address; otherwise it is the peer.
        assert elsewhere.status_code == (200 if seen == client_ip else 429)
