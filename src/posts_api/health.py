"""``GET /health``: is the database reachable, is the cache reachable."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from posts_api.core.deps import CacheDep, SessionDep

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 5.0


@router.get(
    "/health",
    responses={
        200: {
            "content": {
                "application/json": {"example": {"status": "ok", "database": "ok", "cache": "ok"}}
            }
        },
        503: {"description": 'A part is down; it is marked "unavailable"'},
    },
)
async def health(session: SessionDep, cache: CacheDep) -> JSONResponse:
    """Report each backing service; 503 (with ``detail``) when either is down."""
    database_ok = await _database_answers(session)
    cache_ok = await cache.check()
    parts = {
        "database": "ok" if database_ok else "unavailable",
        "cache": "ok" if cache_ok else "unavailable",
    }
    if database_ok and cache_ok:
        return JSONResponse({"status": "ok", **parts})
    down = ", ".join(name for name, state in parts.items() if state != "ok")
    return JSONResponse(
        {"detail": f"unavailable: {down}", "status": "unavailable", **parts}, status_code=503
    )


async def _database_answers(session: SessionDep) -> bool:
    """Run ``SELECT 1`` within a bounded time."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("health: database unavailable: %s", type(exc).__name__)
        return False
    return True
