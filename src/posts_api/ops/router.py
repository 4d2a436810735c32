"""Operational routes: ``/health``, ``/livez``, ``/readyz`` and (when enabled) ``/metrics``.

``/health`` reports every backing service; ``/livez`` only that the process answers; ``/readyz``
whether a load balancer should send it requests: the database answers and the process is not
draining. An unreachable cache does not fail readiness: the service still answers without it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.core.deps import CacheDep, SessionsDep
from posts_api.ops import metrics
from posts_api.ops.lifecycle import Lifecycle

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])
"""``GET /metrics``: included by ``create_app`` only when ``METRICS_ENABLED`` (else a 404)."""
log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 2.0  # under the usual probe timeouts, above a healthy database's answer
State = Literal["ok", "unavailable"]


class HealthOut(BaseModel):
    """Each backing service's state; ``status`` is ``ok`` only when all are."""

    status: State
    database: State
    cache: State


class StatusOut(BaseModel):
    """The body of a passing probe."""

    status: Literal["ok"]


class ProblemOut(BaseModel):
    """The body of a failing probe: the ``detail`` every error body has."""

    detail: str


class HealthDownOut(HealthOut):
    """The 503 body: the states, plus the ``detail`` every error body has."""

    detail: str


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthDownOut}})
async def health(sessions: SessionsDep, cache: CacheDep) -> JSONResponse:
    """Report each backing service; 503 when either is down, the failing part marked."""
    database: State = "ok" if await _database_answers(sessions) else "unavailable"
    cache_state: State = "ok" if await cache.check() else "unavailable"
    if database == cache_state == "ok":
        return JSONResponse(HealthOut(status="ok", database="ok", cache="ok").model_dump())
    down = ", ".join(
        name for name, state in (("database", database), ("cache", cache_state)) if state != "ok"
    )
    body = HealthDownOut(
        detail=f"unavailable: {down}", status="unavailable", database=database, cache=cache_state
    )
    return JSONResponse(body.model_dump(), status_code=503)


@router.get("/livez", response_model=StatusOut)
async def livez() -> JSONResponse:
    """Answer 200 with no I/O: the process is alive and its event loop turns."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", response_model=StatusOut, responses={503: {"model": ProblemOut}})
async def readyz(request: Request, sessions: SessionsDep) -> JSONResponse:
    """200 when the database answers and the process is not draining; else 503 saying which."""
    lifecycle: Lifecycle = request.app.state.lifecycle
    if lifecycle.draining:
        return JSONResponse({"detail": "shutting down"}, status_code=503)
    if not await _database_answers(sessions, READY_TIMEOUT_SECONDS):
        return JSONResponse({"detail": "unavailable: database"}, status_code=503)
    return JSONResponse({"status": "ok"})


@metrics_router.get("/metrics", response_class=Response)
async def metrics_exposition(request: Request) -> Response:
    """The Prometheus text exposition of every worker of this ``serve``."""
    body, content_type = metrics.exposition(request.app.state.metrics_registry)
    return Response(body, media_type=content_type)


async def _database_answers(
    sessions: async_sessionmaker[AsyncSession], seconds: float = CHECK_TIMEOUT_SECONDS
) -> bool:
    """Run ``SELECT 1`` within ``seconds``."""
    try:
        async with asyncio.timeout(seconds), sessions() as session:
            await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("health: database unavailable: %s", type(exc).__name__)
        return False
    return True
