"""``BodySizeLimit`` on its own, as pure ASGI: what reaches the app, and what it reads to decide.

The contract tests (``tests/e2e/test_limits.py``) run the whole app in-process and over a real
server; these pin the mechanism: a body whose length is not declared is read up to the limit
before the app runs, a declared one is judged by its header, and a request with no body at
all goes to the app untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import Message, Receive, Scope, Send

from posts_api.core.limits import BodySizeLimit

LIMIT = 1000


def scope_of(headers: Iterable[tuple[bytes, bytes]] = (), *, http_version: str = "1.1") -> Scope:
    """An HTTP request's scope with ``headers``."""
    return {
        "type": "http",
        "http_version": http_version,
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": list(headers),
    }


CHUNKED = [(b"transfer-encoding", b"chunked")]


class Client:
    """The server's side of one request: the body's messages, and what the app answered."""

    def __init__(self, pieces: Iterable[bytes], *, disconnect: bool = False) -> None:
        """Deliver ``pieces`` as ``http.request`` messages (or stop with a disconnect)."""
        self.messages: list[Message] = [
            {"type": "http.request", "body": piece, "more_body": True} for piece in pieces
        ]
        if disconnect:
            self.messages.append({"type": "http.disconnect"})
        elif self.messages:
            self.messages[-1]["more_body"] = False
        else:
            self.messages.append({"type": "http.request", "body": b"", "more_body": False})
        self.taken = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        """The next message; once the body is over, the disconnect at the end of the request."""
        if self.taken < len(self.messages):
            self.taken += 1
            return self.messages[self.taken - 1]
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        """Keep what the app sends."""
        self.sent.append(message)

    @property
    def status(self) -> int:
        """The status of the answer."""
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        """The answer's headers."""
        return dict(self.sent[0]["headers"])


class BodyReader:
    """An app that reads the whole body (and, after it, the next message) and echoes its size."""

    def __init__(self) -> None:
        """Not called yet."""
        self.calls = 0
        self.body = b""
        self.after: Message | None = None
        self.receive: Receive | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read everything, then answer 200."""
        self.calls += 1
        self.receive = receive
        more = True
        while more:
            message = await receive()
            self.body += message.get("body", b"")
            more = message.get("more_body", False)
        self.after = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(self.body)).encode()})


class BodyIgnorer:
    """An app that reads no body (``GET /livez``, ``POST /auth/logout``): it acts and answers."""

    def __init__(self) -> None:
        """Not called yet."""
        self.calls = 0
        self.receive: Receive | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 204 at once."""
        self.calls += 1
        self.receive = receive
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_an_undeclared_body_over_the_limit_never_reaches_an_app_that_reads_none() -> None:
    app = BodyIgnorer()
    client = Client([b"x" * 400] * 3)
    await BodySizeLimit(app, max_bytes=LIMIT)(scope_of(CHUNKED), client.receive, client.send)
    assert app.calls == 0
    assert client.status == 413
    assert client.headers[b"connection"] == b"close"
    assert "1000" in json.loads(client.sent[1]["body"])["detail"]


async def test_it_reads_no_more_than_one_message_past_the_limit() -> None:
    """An endless chunked body is read only until it passes the limit, then refused."""
    app = BodyReader()
    client = Client([b"x" * 300] * 10_000)
    await BodySizeLimit(app, max_bytes=LIMIT)(scope_of(CHUNKED), client.receive, client.send)
    assert client.status == 413
    assert client.taken == 4  # 1,200 bytes: the first message past 1,000
    assert app.calls == 0


async def test_an_undeclared_body_at_the_limit_reaches_the_app_whole_and_once() -> None:
    app = BodyReader()
    client = Client([b"a" * 250, b"b" * 250, b"c" * 500])
    await BodySizeLimit(app, max_bytes=LIMIT)(scope_of(CHUNKED), client.receive, client.send)
    assert client.status == 200
    assert app.body == b"a" * 250 + b"b" * 250 + b"c" * 500
    assert app.after == {"type": "http.disconnect"}  # later calls reach the server's receive


async def test_an_undeclared_body_at_the_limit_lets_an_app_that_reads_none_answer() -> None:
    app = BodyIgnorer()
    client = Client([b"x" * LIMIT])
    await BodySizeLimit(app, max_bytes=LIMIT)(scope_of(CHUNKED), client.receive, client.send)
    assert (app.calls, client.status) == (1, 204)


async def test_a_client_gone_mid_body_leaves_the_app_uncalled() -> None:
    app = BodyIgnorer()
    client = Client([b"x" * 100], disconnect=True)
    await BodySizeLimit(app, max_bytes=LIMIT)(scope_of(CHUNKED), client.receive, client.send)
    assert app.calls == 0
    assert client.sent == []


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    app = BodyReader()
    client = Client([b"x" * (LIMIT + 1)])
    headers = [(b"content-length", str(LIMIT + 1).encode())]
    await BodySizeLimit(app, max_bytes=LIMIT)(scope_of(headers), client.receive, client.send)
    assert (app.calls, client.taken, client.status) == (0, 0, 413)


async def test_transfer_encoding_wins_over_a_content_length() -> None:
    """A request with both (RFC 9112 6.3: the length is the chunked body's) is counted."""
    app = BodyIgnorer()
    client = Client([b"x" * 600] * 2)
    headers = [(b"content-length", b"10"), *CHUNKED]
    await BodySizeLimit(app, max_bytes=LIMIT)(scope_of(headers), client.receive, client.send)
    assert (app.calls, client.status) == (0, 413)


async def test_a_request_with_no_body_goes_to_the_app_untouched() -> None:
    """The hot path (a GET): no body framing, so nothing is read and ``receive`` is the server's."""
    for headers in ([], [(b"content-length", b"0")], [(b"content-length", b"12")]):
        app = BodyIgnorer()
        client = Client([])
        await BodySizeLimit(app, max_bytes=LIMIT)(scope_of(headers), client.receive, client.send)
        assert app.receive == client.receive, headers
        assert (client.taken, client.status) == (0, 204)


async def test_http2_without_a_length_is_read_first() -> None:
    """HTTP/2 and 3 frame bodies without ``Transfer-Encoding``: no length means read to know."""
    app = BodyIgnorer()
    client = Client([b"x" * 600] * 2)
    await BodySizeLimit(app, max_bytes=LIMIT)(
        scope_of(http_version="2"), client.receive, client.send
    )
    assert (app.calls, client.status) == (0, 413)
