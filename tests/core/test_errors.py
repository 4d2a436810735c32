"""The error handlers: a driver error that escaped SQLAlchemy still answers by what it means."""

from __future__ import annotations

import httpx
import pytest
from asyncpg.exceptions import (
    ConnectionDoesNotExistError,
    InternalClientError,
    UndefinedTableError,
)
from fastapi import FastAPI

from posts_api.core.errors import install_error_handlers


def app_raising(exc: Exception) -> FastAPI:
    """An app whose one route raises ``exc``, with the service's error handlers."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    async def fail() -> None:
        raise exc

    return app


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        # asyncpg's cursor fetch raises its own error when the server ends the connection.
        (ConnectionDoesNotExistError("terminating connection"), 503),
        (
            InternalClientError("cannot switch to state 16; another operation (2) is in progress"),
            503,
        ),
        (UndefinedTableError("relation does not exist"), 500),  # a bug, not an outage
        (RuntimeError("bug"), 500),
    ],
)
async def test_an_unwrapped_driver_error_is_a_503_only_when_the_server_is_away(
    exc: Exception, status: int
) -> None:
    transport = httpx.ASGITransport(app=app_raising(exc), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        resp = await client.get("/")
    assert resp.status_code == status
    detail = "Service temporarily unavailable" if status == 503 else "Internal Server Error"
    assert resp.json() == {"detail": detail}
