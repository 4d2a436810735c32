"""A TCP proxy the tests can cut and restore, to take a real MariaDB or Redis away and back.

The service keeps talking to the real server through it; ``cut()`` drops every connection and
refuses new ones, as a crashed or unreachable server would, and ``restore()`` listens again on
the same port.
"""

from __future__ import annotations

import asyncio
import contextlib

from bench.databases import free_port


class Proxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port`` while up."""

    def __init__(self, target_host: str, target_port: int) -> None:
        """Pick a free local port; call ``restore()`` to start listening."""
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        """Listen (again) and forward new connections."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)
