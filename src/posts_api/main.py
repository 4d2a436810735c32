"""The application factory: ``create_app(settings)`` builds a fully wired FastAPI app.

Tests, the CLI and every server worker build the app the same way. Per-process resources
(engine, session factory, cache, token codec, session guard, services) live on
``app.state``; the engine is created at
once (it connects lazily) and closed, with the cache, by the lifespan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from posts_api import __version__, health
from posts_api.auth import router as auth_router
from posts_api.auth.service import AuthService
from posts_api.auth.sessions import SessionCheck
from posts_api.auth.throttle import LoginThrottle
from posts_api.core.cache import create_cache
from posts_api.core.config import Settings
from posts_api.core.db import create_engine, create_sessionmaker
from posts_api.core.errors import install_error_handlers
from posts_api.core.limits import BodySizeLimit
from posts_api.core.logging import AccessLog
from posts_api.core.security import PasswordHasher, RefreshCodec, TokenCodec
from posts_api.posts import router as posts_router
from posts_api.posts.service import PostService


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings()
    engine = create_engine(settings)
    cache = create_cache(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await cache.close()
            await engine.dispose()

    # /docs serves Swagger UI's assets from the installed package: it works with no internet.
    app = FastAPIOffline(
        title="posts-api",
        version=__version__,
        description="Sign up, log in, and keep your own text posts.",
        lifespan=lifespan,
        redoc_url=None,
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
        sessions,
        cache,
        list_ttl=settings.posts_cache_ttl_seconds,
        max_entry_bytes=settings.posts_cache_max_entry_bytes,
        page_max=settings.posts_page_max,
    )
    # The composition root: each per-process object is built here once, then injected.
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.cache = cache
    app.state.tokens = tokens
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
    # Outermost first: the access log sees every answer, the 413 comes before anything else.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # closed by default: no CORS headers, browsers refuse other sites
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(AccessLog)
    install_error_handlers(app)
    app.include_router(auth_router.router)
    app.include_router(posts_router.router)
    posts_router.document_page_max(app, settings.posts_page_max)
    app.include_router(health.router)
    return app
