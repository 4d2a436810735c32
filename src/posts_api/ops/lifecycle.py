"""Draining: on SIGTERM, say "not ready" at once, keep serving a while, then let uvicorn stop.

uvicorn already does the rest of a graceful stop: when its ``Server.handle_exit`` runs it stops
accepting, closes idle connections, waits for requests in flight (``timeout_graceful_shutdown``)
and runs the lifespan's shutdown. Under ``--workers N`` its supervisor forwards SIGTERM to every
worker, so each worker drains the same way. All this module adds is a delay in front of
uvicorn's own handler, during which ``/readyz`` answers 503 so load balancers stop sending.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SignalHandler = Callable[[int, FrameType | None], Any]


class Lifecycle:
    """One process's shutdown state: ``draining`` turns true on the first SIGTERM."""

    def __init__(self, *, drain_seconds: float) -> None:
        """Keep serving ``drain_seconds`` after SIGTERM before handing over to the server."""
        self.drain_seconds = drain_seconds
        self.draining = False

    def watch_sigterm(self) -> Callable[[], None]:
        """Put the drain in front of the current SIGTERM handler; return a function undoing it.

        Call it in the main thread once the server has installed its own handler (the
        lifespan's startup does: uvicorn installs its handlers before it starts the app). When
        no Python handler is installed (not under a server), nothing is changed.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        server_handler = signal.getsignal(signal.SIGTERM)
        if not callable(server_handler):
            return lambda: None

        def on_sigterm(sig: int, frame: FrameType | None) -> None:
            if self.draining:  # the supervisor forwards what the process group also got
                return
            self.draining = True
            log.info("SIGTERM: draining", extra={"drain_seconds": self.drain_seconds})
            if self.drain_seconds <= 0:
                server_handler(sig, frame)
                return
            timer = threading.Timer(self.drain_seconds, server_handler, (sig, None))
            timer.daemon = True
            timer.start()

        signal.signal(signal.SIGTERM, on_sigterm)

        def restore() -> None:
            if signal.getsignal(signal.SIGTERM) is on_sigterm:
                signal.signal(signal.SIGTERM, server_handler)

        return restore
