"""The application factory: ``create_app(settings)`` builds a fully wired FastAPI app.

Tests, the CLI and every server worker build the app the same way. Per-process resources
(engine, session factory, cache, token codec, session guard, services) live on ``app.state``;
the engine is created at once (it connects lazily) and closed, with the cache, by the lifespan.
``serve`` runs ``create_served_app``: the same app, which also drains on SIGTERM.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp

from posts_api import __version__
from posts_api.auth import router as auth_router
from posts_api.auth.service import AuthService
from posts_api.auth.sessions import SessionCheck
from posts_api.auth.throttle import LoginThrottle
from posts_api.core.cache import create_cache
from posts_api.core.config import Settings
from posts_api.core.db import create_engine, create_list_engine, create_sessionmaker, is_sqlite
from posts_api.core.driver import DriverPool
from posts_api.core.errors import install_error_handlers
from posts_api.core.limits import BodySizeLimit
from posts_api.core.security import PasswordHasher, RefreshCodec, TokenCodec
from posts_api.ops import metrics
from posts_api.ops import router as ops_router
from posts_api.ops.lifecycle import Lifecycle
from posts_api.ops.middleware import RequestObserver
from posts_api.posts import router as posts_router
from posts_api.posts.service import PostService


def create_served_app() -> FastAPI:
    """The app as each ``serve`` worker runs it: settings from the environment, draining on."""
    return create_app(watch_sigterm=True)


def create_app(settings: Settings | None = None, *, watch_sigterm: bool = False) -> FastAPI:
    """Build the app for ``settings`` (read from the environment when omitted).

    With ``watch_sigterm`` the lifespan puts the drain (``ops.lifecycle``) in front of the
    server's SIGTERM handler. Switches this process's domain counters on or off
    (``METRICS_ENABLED``).
    """
    settings = settings or Settings()
    engine = create_engine(settings)
    list_engine = create_list_engine(settings, engine)
    # SQLite: the posts routes' statements share a connection of their own (see core.driver).
    sqlite = is_sqlite(settings.database)
    statements = DriverPool(create_engine(settings) if sqlite else engine, shared=sqlite)
    lists = DriverPool(list_engine) if sqlite else statements  # SQLite: its own connections
    cache = create_cache(settings)
    lifecycle = Lifecycle(drain_seconds=settings.shutdown_drain_seconds)
    metrics.set_recording(enabled=settings.metrics_enabled)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        unwatch = lifecycle.watch_sigterm() if watch_sigterm else None
        flushing = (
            asyncio.create_task(metrics.flush_periodically()) if settings.metrics_enabled else None
        )
        try:
            yield
        finally:
            if unwatch is not None:
                unwatch()
            if flushing is not None:
                flushing.cancel()  # it flushes once more as it stops
                await asyncio.wait([flushing])
            await cache.close()
            await statements.close()
            if statements.engine is not engine:
                await statements.engine.dispose()
            await engine.dispose()
            if list_engine is not engine:
                await list_engine.dispose()
            if settings.metrics_enabled:
                metrics.mark_process_dead(os.getpid())

    # /docs serves Swagger UI's assets from the installed package: it works with no internet.
    app = FastAPIOffline(
        title="posts-api",
        version=__version__,
        description="Sign up, log in, and keep your own text posts.",
        lifespan=lifespan,
        redoc_url=None,
        # The posts routes are the app's own, and its first: a route of an included router is
        # matched through that router on every request (GET /posts, the hot path, paid ~14 us).
        routes=list(posts_router.router.routes),
    )
    sessions = create_sessionmaker(engine)
    secret = settings.secret_key.get_secret_value()
    tokens = TokenCodec(secret, dt.timedelta(minutes=settings.access_token_expire_minutes))
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    session_check = SessionCheck(sessions, cache, ttl=tokens.lifetime_seconds)
    posts = PostService(
        lists,
        statements,
        cache,
        list_ttl=settings.posts_cache_ttl_seconds,
        max_entry_bytes=settings.posts_cache_max_entry_bytes,
        page_max=settings.posts_page_max,
    )
    # The composition root: each per-process object is built here once, then injected.
    app.state.settings = settings
    app.state.engine = engine
    app.state.list_engine = list_engine
    app.state.sessions = sessions
    app.state.cache = cache
    app.state.tokens = tokens
    app.state.lifecycle = lifecycle
    app.state.session_guard = session_check
    app.state.auth = AuthService(
        sessions,
        tokens=tokens,
        refresh_tokens=RefreshCodec(secret),
        refresh_lifetime=dt.timedelta(days=settings.refresh_token_expire_days),
        hasher=hasher,
        throttle=LoginThrottle(cache, settings),
        session_check=session_check,
        forget_user_data=posts.forget_user,
    )
    app.state.posts = posts
    # The 413 comes before anything else the app does.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # closed by default: no CORS headers, browsers refuse other sites
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    install_error_handlers(app)
    app.include_router(auth_router.router)
    posts_router.document_page_max(app, settings.posts_page_max)
    app.include_router(ops_router.router)
    if settings.metrics_enabled:
        app.state.metrics_registry = metrics.scrape_registry()
        app.include_router(ops_router.metrics_router)
    _observe_outermost(app, record_metrics=settings.metrics_enabled)
    return app


def _observe_outermost(app: FastAPI, *, record_metrics: bool) -> None:
    """Wrap the whole middleware stack, Starlette's 500 handler included, in ``RequestObserver``.

    ``add_middleware`` would put it inside ``ServerErrorMiddleware``, so a 500 would leave
    without its request id and be logged before it is answered.
    """
    build_stack = app.build_middleware_stack

    def build_observed_stack() -> ASGIApp:
        return RequestObserver(build_stack(), record_metrics=record_metrics)

    app.build_middleware_stack = build_observed_stack  # type: ignore[method-assign]
