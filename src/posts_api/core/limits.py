"""The request-body size limit, as a pure ASGI middleware wrapping ``receive``.

The limit holds on the bytes actually received: a ``Content-Length`` over the limit is refused
before a byte of the body is read, and a body without one (chunked) is counted as it streams in
and refused as soon as it passes the limit, so at most one network chunk beyond the limit is
ever buffered. The answer is a JSON 413, before any other check (token, body validation).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit; rendered as a JSON 413."""

    def __init__(self, max_bytes: int) -> None:
        """Say what the limit is."""
        super().__init__(413, f"Request body too large: the limit is {max_bytes} bytes")


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with a 413 ``{"detail": ...}``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap ``app``; bodies of up to ``max_bytes`` bytes pass untouched."""
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the streamed bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > max_bytes:
                    await self._refuse(scope, receive, send)
                    return
                break

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413 and close the connection (the rest of the body is never read)."""
        detail = BodyTooLarge(self.max_bytes).detail
        response = JSONResponse(
            {"detail": detail}, status_code=413, headers={"Connection": "close"}
        )
        await response(scope, receive, send)
