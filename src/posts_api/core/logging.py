"""Structured logs: one JSON line per record on stderr, and one record per request.

The request record says method, path, status and duration, and nothing else: no headers (they
carry tokens), no query strings, no bodies (they carry passwords).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("posts_api.access")

# Headers every response gets.
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff")]


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message and any ``extra``."""

    # Attributes every record has, and uvicorn's terminal-coloured duplicate of its message.
    RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {
        "message",
        "asctime",
        "color_message",
    }

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in record.__dict__.items() if k not in self.RESERVED}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# A ``logging.config.dictConfig`` schema. ``serve`` hands it to uvicorn, which applies it in
# every worker process as well as in the supervisor.
LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.error": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": False},  # AccessLog below replaces it
    },
}


def configure_logging() -> None:
    """Send every log record of this process to stderr as JSON lines."""
    logging.config.dictConfig(LOGGING_CONFIG)
    # Skip what no record here uses; each costs microseconds on every request's log line
    # (the logging HOWTO's "Optimization" section lists these switches).
    logging._srcfile = None  # no caller file/line look-up
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class AccessLog:
    """Pure ASGI middleware: log each HTTP request once it is answered.

    It also adds ``X-Content-Type-Options: nosniff`` to every response.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and record its outcome."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )
