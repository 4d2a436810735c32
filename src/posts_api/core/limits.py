"""The request-body size limit, as a pure ASGI middleware in front of the whole app.

The limit holds on every route, the ones that read no body included (``GET /posts``,
``POST /auth/logout``: a request over the limit there is refused and has no effect), and it is
decided before the app runs, so the 413 comes before any other check (token, body validation).
How a request frames its body decides how:

- ``Content-Length`` over the limit: refused before a byte of the body is read. Within the
  limit, the app gets the body as the server delivers it: HTTP framing ends the body at the
  declared length (what follows is the next request), so it cannot pass the limit.
- No declared length (``Transfer-Encoding: chunked``; in HTTP/2 and 3, no ``Content-Length``):
  the body is read before the app runs, and refused as soon as it passes the limit, so at most
  one message of the server's beyond the limit is ever held. A body within the limit is then
  handed to the app whole, as one message.
- Neither header in HTTP/1.x: the request has no body (every plain ``GET``), and the app gets
  the server's own ``receive``: nothing is read, nothing is wrapped.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNDECLARED = -1
"""What ``declared_length`` says of a body whose length only reading it tells."""


def declared_length(scope: Scope) -> int:
    """The body's length as the request's framing declares it (RFC 9112 6.3).

    ``UNDECLARED`` for a chunked body, whatever ``Content-Length`` says (the chunked framing
    wins), for a ``Content-Length`` that is not a number, and for an HTTP/2 or 3 request
    without one; 0 for an HTTP/1.x request with neither header, which has no body.
    """
    length: int | None = None
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return UNDECLARED
        if name == b"content-length" and length is None:
            length = int(value) if value.isdigit() else UNDECLARED
    if length is not None:
        return length
    return 0 if scope.get("http_version", "1.1") in ("1.1", "1.0") else UNDECLARED


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` as the request's one message, then defers to ``receive``.

    The server's ``receive`` still tells the app when the client disconnects.
    """
    pending: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def replay() -> Message:
        nonlocal pending
        if pending is None:
            return await receive()
        message, pending = pending, None
        return message

    return replay


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with a 413 ``{"detail": ...}``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap ``app``; bodies of up to ``max_bytes`` bytes pass."""
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"Request body too large: the limit is {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Judge the body by its declared length, or read it first when it declares none."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length == UNDECLARED:
            body = await self._read_within_limit(scope, receive, send)
            if body is None:
                return
            receive = replaying(body, receive)
        elif length > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _read_within_limit(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body; ``None`` once answered 413 (past the limit), or if the client left.

        Past the limit, the rest of the body stays unread.
        """
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect: no one to answer
                return None
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413 and close the connection (the rest of the body is never read)."""
        response = JSONResponse(
            {"detail": self.detail}, status_code=413, headers={"Connection": "close"}
        )
        await response(scope, receive, send)
