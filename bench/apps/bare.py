"""The ceiling: a bare ASGI app, no framework, that answers from a dict of prebuilt bytes.

Per request it does the least any server-side app must: find the ``Authorization`` header, look
the body up, send it. Everything ``posts-api`` does beyond that (routing, dependencies, token
check, cache lookup, middleware, logging) is the distance the benchmark reports.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from bench.apps import NOSNIFF, load_bodies

NOT_FOUND = b'{"detail":"Not Found"}'


def build(bodies: Mapping[str, bytes]) -> ASGIApp:
    """An ASGI app answering GET /posts with ``bodies[authorization]`` (404 for anything else)."""
    responses = {
        auth.encode(): (
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    NOSNIFF,
                ],
            },
            {"type": "http.response.body", "body": body},
        )
        for auth, body in bodies.items()
    }
    missing = (
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(NOT_FOUND)).encode()),
            ],
        },
        {"type": "http.response.body", "body": NOT_FOUND},
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        auth = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
                break
        start, body = responses.get(auth, missing) if scope["path"] == "/posts" else missing
        await send(start)
        await send(body)

    return app


def from_env() -> ASGIApp:
    """The factory servers call (``--factory bench.apps.bare:from_env``)."""
    return build(load_bodies())
