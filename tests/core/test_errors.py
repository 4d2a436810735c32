"""The error handlers: a driver error that escaped SQLAlchemy still answers by what it means; a
405 names every method of the path; a bad token comes before bad input."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from asyncpg.exceptions import (
    ConnectionDoesNotExistError,
    InternalClientError,
    UndefinedTableError,
)
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from posts_api.core.errors import Unauthorized, install_error_handlers


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


async def test_allow_names_every_method_of_a_path_in_an_included_router() -> None:
    app = FastAPI()
    install_error_handlers(app)
    things = APIRouter(prefix="/things")

    @things.get("/{thing_id}")
    async def read(thing_id: int) -> None: ...

    @things.delete("/{thing_id}")
    async def remove(thing_id: int) -> None: ...

    app.include_router(things)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        resp = await client.patch("/things/1")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "DELETE, GET"
    assert resp.json() == {"detail": "Method Not Allowed"}


class Body(BaseModel):
    text: str


class Gate(HTTPBearer):
    """A scheme whose check fails unless the token is ``good``."""

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        return await self.authenticate(request)

    async def authenticate(self, request: Request) -> str:
        if request.headers.get("authorization") != "Bearer good":
            raise Unauthorized()
        return "caller"


async def test_bad_input_on_a_protected_route_is_a_401_first_when_the_token_is_bad() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/things")
    async def create(body: Body, caller: Annotated[str, Depends(Gate())]) -> None: ...

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        json = {"Content-Type": "application/json"}
        bad_token = await client.post("/things", content=b"{bad", headers=json)
        good_token = await client.post(
            "/things", content=b"{bad", headers=json | {"Authorization": "Bearer good"}
        )
    assert bad_token.status_code == 401
    assert bad_token.headers["www-authenticate"] == "Bearer"
    assert good_token.status_code == 422
    assert good_token.json()["detail"][0]["type"] == "json_invalid", good_token.text
