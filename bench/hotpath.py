"""Where the time of a cached GET /posts goes: in-process timings and a cProfile breakdown.

Run as its own process (``python -m bench.hotpath ...``) on the SQLite set-up's database once
the servers are stopped. No server, no socket: an ASGI scope as uvicorn would build it is handed
straight to each app in a loop on uvloop, so what is measured is the app's own CPU time per
request, which is where our code can win or lose against the bare app.

Timed, in microseconds per request (the best of five runs, every app in turn):

* the bare ASGI app and the minimal FastAPI route (the two ceilings);
* ``posts-api`` as served: ``create_app`` with ``configure_logging()``, the JSON access log
  written to /dev/null (so its formatting is paid, the disk is not);
* what-ifs, each one change away from that, made without touching ``src/`` (the route's
  dependency callables swapped in place, the access logger's level, the middleware list):
  the access log off; any plain ``def`` dependency made ``async def`` (FastAPI runs a plain
  ``def`` in its thread pool); token verification replaced by a fixed user id; no middleware;
  all together;
* the app as served but with the Redis cache (when ``--redis-url`` is given): what a hit
  costs through redis-py, the round trip to the local Redis included.

Then the served app runs under cProfile: own time per area (our code, FastAPI, Starlette,
logging, ...; time in C built-ins goes to the area of the Python function that called them)
and the top functions. cProfile slows Python code down unevenly: read its shares as where to
look, and the timings above as what a change is worth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import inspect
import json
import logging
import os
import pstats
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import redis
import uvloop
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message

from bench.apps import bare, load_bodies, minimal
from posts_api.core.config import Settings
from posts_api.core.logging import configure_logging
from posts_api.main import create_app
from posts_api.ops import metrics

ROUNDS = 5  # timings: the best of this many interleaved runs of every app

AREAS = (  # first match on the file path wins
    ("/asyncio/runners.py", "event loop (uvloop's C loop, and waiting for threads)"),
    ("/posts_api/", "posts_api (our code)"),
    ("/fastapi/", "FastAPI"),
    ("/starlette/", "Starlette"),
    ("/pydantic", "pydantic"),
    ("/anyio/", "anyio (thread pool)"),
    ("/concurrent/", "thread pool"),
    ("threading.py", "thread pool"),
    ("/logging/", "logging"),
    ("/json/", "json"),
    ("/sqlalchemy/", "SQLAlchemy"),
    ("/cachetools/", "cachetools"),
    ("/asyncio/", "asyncio"),
    ("contextlib.py", "contextlib"),
    ("/bench/", "bench driver"),
)


def area_of(path: str) -> str:
    """The area a source file belongs to."""
    for marker, area in AREAS:
        if marker in path:
            return area
    return "other Python"


def make_scope(authorization: bytes) -> dict[str, Any]:
    """An HTTP scope for GET /posts like uvicorn's (copied for each request: apps add to it)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/posts",
        "raw_path": b"/posts",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", authorization),
        ],
        "state": {},
    }


class Driver:
    """Calls an ASGI app ``n`` times on one uvloop loop and checks every answer was a 200."""

    def __init__(self, scope: dict[str, Any]) -> None:
        """Use ``scope`` (copied per request) for every call."""
        self.scope = scope
        self.statuses: Counter[int] = Counter()
        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)

    async def _receive(self) -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.statuses[message["status"]] += 1

    async def _loop(self, app: ASGIApp, n: int) -> None:
        scope, receive, send = self.scope, self._receive, self._send
        for _ in range(n):
            await app(dict(scope), receive, send)

    def run(self, app: ASGIApp, n: int) -> float:
        """Serve ``n`` requests; return the seconds taken."""
        self.statuses.clear()
        started = time.perf_counter()
        self.runner.run(self._loop(app, n))
        elapsed = time.perf_counter() - started
        if set(self.statuses) != {200}:
            raise RuntimeError(f"unexpected answers in the hot-path loop: {dict(self.statuses)}")
        return elapsed

    def close(self) -> None:
        """Close the loop."""
        self.runner.close()


def _all_routes(routes: Sequence[Any]) -> Iterator[Any]:
    """Every route, including those of included routers and mounts, however they are nested."""
    for route in routes:
        yield route
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        inner = inner if inner is not None else getattr(route, "routes", None)
        if inner:
            yield from _all_routes(inner)


def _get_posts_route(app: FastAPI) -> APIRoute:
    """The route that serves GET /posts."""
    for route in _all_routes(app.routes):
        if isinstance(route, APIRoute) and route.path == "/posts" and "GET" in route.methods:
            return route
    raise LookupError("no GET /posts route")


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    """Every dependency below ``dependant``, depth first."""
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _runs_in_thread(call: Callable[..., Any]) -> bool:
    """True for what FastAPI runs in its thread pool: a plain ``def`` (or a class)."""
    target = call
    if not (inspect.isfunction(call) or inspect.ismethod(call) or inspect.isclass(call)):
        target = type(call).__call__  # an instance: its __call__ decides
    return not (
        inspect.iscoroutinefunction(target)
        or inspect.isgeneratorfunction(target)
        or inspect.isasyncgenfunction(target)
    )


def _async_twin(call: Callable[..., Any]) -> Callable[..., Any]:
    """An ``async def`` with ``call``'s signature that returns what ``call`` returns."""

    @functools.wraps(call)
    async def twin(**kwargs: Any) -> Any:
        return call(**kwargs)

    return twin


def dependency_report(app: FastAPI) -> dict[str, Any]:
    """The dependencies GET /posts resolves per request, and which run in the thread pool."""
    calls = [d.call for d in _dependencies(_get_posts_route(app).dependant) if d.call]
    return {
        "count": len(calls),
        "names": [getattr(c, "__qualname__", type(c).__name__) for c in calls],
        "in_thread_pool": [
            getattr(c, "__qualname__", type(c).__name__) for c in calls if _runs_in_thread(c)
        ],
    }


@contextlib.contextmanager
def swapped_calls(app: FastAPI, swaps: dict[Any, Callable[..., Any]]) -> Iterator[None]:
    """Replace dependency callables of GET /posts in place for the block, then restore them.

    In place, not through ``app.dependency_overrides``: FastAPI re-analyses an overridden
    dependency's signature on every request, which would bias a what-if by its own cost. For
    the block only: routers are module-level objects, so every app built by ``create_app``
    shares these routes, and the other variants must see them as they are.
    """
    changed = [d for d in _dependencies(_get_posts_route(app).dependant) if d.call in swaps]
    originals = [d.call for d in changed]
    for dependant in changed:
        dependant.call = swaps[dependant.call]
    try:
        yield
    finally:
        for dependant, call in zip(changed, originals, strict=True):
            dependant.call = call


@contextlib.contextmanager
def access_log_off() -> Iterator[None]:
    """Raise the access logger above INFO for the block (the request observer then logs nothing)."""
    access = logging.getLogger("posts_api.access")
    access.setLevel(logging.WARNING)
    try:
        yield
    finally:
        access.setLevel(logging.NOTSET)


@contextlib.contextmanager
def domain_counters_on() -> Iterator[None]:
    """Let the domain counters (the cache hit of GET /posts) count for the block."""
    metrics.set_recording(enabled=True)
    try:
        yield
    finally:
        metrics.set_recording(enabled=False)


class _FixedTokens:
    """Stands in for the token codec: every token names the same session, no check at all."""

    def __init__(self, user_id: int, session_id: str) -> None:
        self.caller = (user_id, session_id)

    def verify(self, _token: str) -> tuple[int, str]:
        return self.caller


@contextlib.contextmanager
def fixed_tokens(app: FastAPI, user_id: int, session_id: str) -> Iterator[None]:
    """Swap ``app.state.tokens`` (what the bearer dependency verifies with) for the block."""
    codec = app.state.tokens
    app.state.tokens = _FixedTokens(user_id, session_id)
    try:
        yield
    finally:
        app.state.tokens = codec


@dataclass(frozen=True)
class Variant:
    """An app to time, and what to change around it while it is timed."""

    label: str
    app: ASGIApp | None  # None: the change does not apply to this code
    changes: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext


def build_variants(settings: Settings, user_id: int, session_id: str) -> dict[str, Variant]:
    """The app as served, and each what-if, one change away from it.

    * ``log_off``: the JSON access log off;
    * ``sync_deps``: every plain ``def`` dependency of GET /posts swapped for an ``async def``
      twin (FastAPI runs a plain ``def`` dependency in its thread pool);
    * ``fixed_user``: the token codec the bearer dependency uses swapped for a stub that
      returns the user's and session's ids (what verifying a token costs; the session check kept);
    * ``metrics``: ``METRICS_ENABLED=true`` (the HTTP series recorded per request, in
      memory: one process, no multiprocess directory);
    * ``no_middleware``: the app's own middleware removed (request id, access log, metrics,
      body limit);
    * ``all``: all of these together.
    """
    served = create_app(settings)
    sync_calls = [
        d.call
        for d in _dependencies(_get_posts_route(served).dependant)
        if d.call and _runs_in_thread(d.call)
    ]
    asyncified = {call: _async_twin(call) for call in sync_calls}
    bare_app = create_app(settings)
    bare_app.user_middleware.clear()  # the stack is built on the first call
    # create_app wraps the stack in the request observer (id, log, metrics) through an
    # instance attribute: dropping it leaves FastAPI's own stack builder.
    vars(bare_app).pop("build_middleware_stack", None)
    with_metrics = create_app(settings.model_copy(update={"metrics_enabled": True}))
    metrics.set_recording(enabled=False)  # per process: on only while ``metrics`` is timed

    def everything(app: FastAPI) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(swapped_calls(app, asyncified))
        if hasattr(app.state, "tokens"):
            stack.enter_context(fixed_tokens(app, user_id, session_id))
        return stack

    return {
        "served": Variant("posts-api as served (JSON access log on)", served),
        "log_off": Variant("access log off", served, access_log_off),
        "sync_deps": Variant(
            "plain def dependencies made async",
            served if sync_calls else None,
            lambda: swapped_calls(served, asyncified),
        ),
        "fixed_user": Variant(
            "token verification replaced by a fixed user id",
            served if hasattr(served.state, "tokens") else None,
            lambda: fixed_tokens(served, user_id, session_id),
        ),
        "metrics": Variant("metrics on (METRICS_ENABLED=true)", with_metrics, domain_counters_on),
        "no_middleware": Variant("no middleware (no request id, access log, body limit)", bare_app),
        "all": Variant("all of the above", bare_app, lambda: everything(bare_app)),
    }


def profile(driver: Driver, app: ASGIApp, n: int) -> dict[str, Any]:
    """CProfile ``n`` requests: own time per area, and the top functions, per request."""
    profiler = cProfile.Profile()
    profiler.enable()
    driver.run(app, n)
    profiler.disable()
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    per_area: Counter[str] = Counter()
    top = []
    for (path, line, name), (_cc, calls, own, _cum, callers) in stats.items():
        if path == "~":  # a C built-in: charge its callers' areas
            for (caller_path, _l, _n), caller_stats in callers.items():
                per_area[area_of(caller_path)] += caller_stats[2]
        else:
            per_area[area_of(path)] += own
        where = name if path == "~" else f"{_short(path)}:{line}({name})"
        top.append((own, calls, where, "built-in" if path == "~" else area_of(path)))
    total = sum(per_area.values())
    top.sort(reverse=True)
    return {
        "requests": n,
        "total_us": total / n * 1e6,
        "areas": [
            {"area": area, "us": own / n * 1e6, "share": own / total}
            for area, own in per_area.most_common()
        ],
        "top": [
            {"function": where, "area": area, "us": own / n * 1e6, "calls": calls / n}
            for own, calls, where, area in top[:15]
        ],
    }


def _short(path: str) -> str:
    """A source path from its package down (``fastapi/routing.py``)."""
    parts = Path(path).parts
    for anchor in ("site-packages", "src", "python3.11"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    return Path(path).name


def redis_variant(settings: Settings, redis_url: str | None) -> FastAPI | None:
    """The served app with the Redis cache instead of ``mem://``; ``None`` without Redis.

    Its Redis database is flushed first; the caller flushes it again at the end.
    """
    if not redis_url:
        return None
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError:
        return None
    finally:
        client.close()
    return create_app(settings.model_copy(update={"cache_url": redis_url}))


def run(
    database_url: str, secret: str, bodies_file: Path, n: int, redis_url: str | None = None
) -> dict[str, Any]:
    """Time every variant and profile the served app; return a JSON-ready report."""
    bodies = load_bodies(str(bodies_file))
    authorization = next(iter(bodies)).encode()
    configure_logging()
    devnull = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, cache_url="mem://", secret_key=secret
    )
    driver = Driver(make_scope(authorization))
    token = authorization.decode().partition(" ")[2]
    claims = jwt.decode(token, options={"verify_signature": False})
    variants = build_variants(settings, int(claims["sub"]), claims["sid"])
    apps = {
        "bare": Variant("bare ASGI app", bare.build(bodies)),
        "minimal": Variant("minimal FastAPI route", minimal.build(bodies)),
        **variants,
        "redis": Variant(
            "as served, but the Redis cache (its round trip included)",
            redis_variant(settings, redis_url),
        ),
    }
    served = variants["served"].app
    assert served is not None
    best: dict[str, float] = {}
    for app in {id(v.app): v.app for v in apps.values() if v.app is not None}.values():
        driver.run(app, max(1, n // 10))  # warm: the first GET is a miss, code paths load
    for _ in range(ROUNDS):  # interleaved, so a busy moment of the machine hits all alike
        for key, variant in apps.items():
            if variant.app is None:
                continue
            with variant.changes():
                per_request = driver.run(variant.app, n) / n * 1e6
            best[key] = min(best.get(key, per_request), per_request)
    timings = {key: {"label": v.label, "us": best.get(key)} for key, v in apps.items()}
    if redis_url:
        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()
    report = {
        "requests": n,
        "timings": timings,
        "dependencies": dependency_report(served),
        "profile": profile(driver, served, n),
    }
    driver.close()
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``--database-url``, ``--secret``, ``--bodies``, ``--requests``, ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--redis-url", help="also time the app on this (flushed) Redis database")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    report = run(args.database_url, args.secret, args.bodies, args.requests, args.redis_url)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
