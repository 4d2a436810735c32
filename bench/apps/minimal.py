"""The framework's own floor: one FastAPI route that returns prebuilt bytes, no dependencies.

What separates it from ``bare`` is FastAPI and Starlette themselves; what separates ``posts-api``
from it is our own code: dependencies, token check, cache, middleware, logging.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request, Response

from bench.apps import load_bodies

JSON = "application/json"
NOSNIFF = {"x-content-type-options": "nosniff"}


def build(bodies: Mapping[str, bytes]) -> FastAPI:
    """A FastAPI app whose GET /posts returns ``bodies[authorization]``."""
    app = FastAPI(title="minimal")

    @app.get("/posts")
    async def posts(request: Request) -> Response:
        body = bodies.get(request.headers.get("authorization", ""))
        if body is None:
            return Response(b'{"detail":"Not Found"}', status_code=404, media_type=JSON)
        return Response(body, media_type=JSON, headers=NOSNIFF)

    return app


def from_env() -> FastAPI:
    """The factory servers call (``--factory bench.apps.minimal:from_env``)."""
    return build(load_bodies())
