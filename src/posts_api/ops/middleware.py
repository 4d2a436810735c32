"""The outermost middleware: request id, access log line and HTTP metrics for every request.

It lives in ``ops`` with the other operational parts; the log *format* (JSON lines) stays in
``core/logging.py``, which every process uses, requests or not.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posts_api.core.logging import AccessEntry, AccessLog
from posts_api.ops import metrics

NOSNIFF = (b"x-content-type-options", b"nosniff")
"""A header every response gets."""

REQUEST_ID_HEADER = b"x-request-id"
_valid_request_id = re.compile(rb"[A-Za-z0-9._-]{1,128}").fullmatch
# A new id is this process's random prefix plus a counter: unique across processes and hosts
# for practical purposes, and far cheaper than a uuid4 per request.
_ID_PREFIX = secrets.token_hex(6)
_next_number = itertools.count(1).__next__

UNMATCHED = "<unmatched>"
"""The ``route`` label of requests no route matched: never the raw path (user data)."""
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "OTHER"


def new_request_id() -> str:
    """A fresh request id in the contract's alphabet (hex digits and ``-``)."""
    return f"{_ID_PREFIX}-{_next_number():x}"


def _request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when valid, else a new one."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _valid_request_id(value):
                return bytes(value).decode("ascii")
            break
    return new_request_id()


class RequestObserver:
    """Pure ASGI middleware, outermost: id, log and measure each HTTP request once answered.

    Every response gets ``X-Request-ID`` (the client's own when it is 1..128 characters of
    ``A-Za-z0-9._-``, else a new one) and ``X-Content-Type-Options: nosniff``. The log line says
    method, path, status, duration, client address and request id: no headers (they carry
    tokens), no query strings, no bodies (they carry passwords). With ``record_metrics`` the
    request is counted in ``http_requests_total`` and ``http_request_duration_seconds``
    (batched: see ``ops.metrics``).
    """

    def __init__(self, app: ASGIApp, *, record_metrics: bool) -> None:
        """Wrap ``app``; record metrics only when ``record_metrics``."""
        self.app = app
        self.metrics = metrics.pending if record_metrics else None
        self.access_log = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Tag, time and forward the request; log (and count) its outcome."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        added = ((REQUEST_ID_HEADER, request_id.encode("ascii")), NOSNIFF)
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            if self.metrics is not None:
                route: Any = scope.get("route")
                self.metrics.record(
                    method if method in KNOWN_METHODS else OTHER_METHOD,
                    route.path if route is not None else UNMATCHED,
                    status,
                    seconds,
                )
            client = scope.get("client")
            self.access_log.write(
                AccessEntry(
                    created=time.time(),
                    method=method,
                    path=scope["path"],
                    status=status,
                    duration_ms=round(seconds * 1000, 3),
                    client=client[0] if client else None,
                    request_id=request_id,
                )
            )
