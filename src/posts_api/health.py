"""``GET /health``: is the database reachable, is the cache reachable."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.core.deps import CacheDep, SessionsDep

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 5.0
State = Literal["ok", "unavailable"]


class HealthOut(BaseModel):
    """Each backing service's state; ``status`` is ``ok`` only when all are."""

    status: State
    database: State
    cache: State


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


async def _database_answers(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Run ``SELECT 1`` within a bounded time."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), sessions() as session:
            await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("health: database unavailable: %s", type(exc).__name__)
        return False
    return True
