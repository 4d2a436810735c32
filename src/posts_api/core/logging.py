"""Structured logs: one JSON line per record on stderr.

The per-request line is written by ``posts_api.ops.middleware`` through ``AccessLog`` (logger
``posts_api.access``): when that logger's records would only reach our JSON stream handler,
``AccessLog`` writes the line itself, the very text ``JsonFormatter`` would have made, without
building a ``LogRecord``; under any other set-up (a test's capture handler, a file of your own)
it logs a record as usual.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
from json.encoder import encode_basestring_ascii as json_string
from typing import Any, NamedTuple, TypeGuard

ACCESS_LOGGER = "posts_api.access"


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
        entry = {
            "time": json_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in record.__dict__.items() if k not in self.RESERVED}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def json_time(created: float) -> str:
    """A record's time as the log shows it: ISO 8601 in UTC, to the millisecond."""
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")


class AccessEntry(NamedTuple):
    """What the log line of one answered request says (no headers, query strings or bodies)."""

    created: float
    method: str
    path: str
    status: int
    duration_ms: float
    client: str | None
    request_id: str


def access_line(entry: AccessEntry) -> str:
    """The JSON line of one request, exactly as ``JsonFormatter`` renders its access record."""
    client = "null" if entry.client is None else json_string(entry.client)
    return (
        f'{{"time": "{json_time(entry.created)}", "level": "info", "logger": "{ACCESS_LOGGER}", '
        f'"message": "request", "method": {json_string(entry.method)}, '
        f'"path": {json_string(entry.path)}, "status": {entry.status}, '
        f'"duration_ms": {entry.duration_ms!r}, "client": {client}, '
        f'"request_id": {json_string(entry.request_id)}}}\n'
    )


class AccessLog:
    """The request log: one line per answered request, on logger ``posts_api.access``.

    Switched off like any logger (its level above INFO). Where the line goes is decided on each
    request from the logging set-up in force, so reconfiguring logging is always honoured.
    """

    def __init__(self) -> None:
        """Log on ``posts_api.access``."""
        self.logger = logging.getLogger(ACCESS_LOGGER)

    def write(self, entry: AccessEntry) -> None:
        """Log one request."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = self._json_stream_only()
        if handler is None:
            fields = entry._asdict()
            del fields["created"]  # a record keeps its own time
            logger.info("request", extra=fields)
            return
        line = access_line(entry)
        handler.acquire()  # as ``Handler.handle`` does around ``emit``
        try:
            handler.stream.write(line)
            handler.stream.flush()
        finally:
            handler.release()

    def _json_stream_only(self) -> logging.StreamHandler[Any] | None:
        """The one handler a record of this logger reaches, if it is a plain JSON stream handler.

        ``None`` when the record would reach any other handler, or pass a filter: then only
        logging itself knows what to do with it.
        """
        logger: logging.Logger | None = self.logger
        if self.logger.filters:
            return None
        found = None
        while logger is not None:
            for handler in logger.handlers:
                if found is not None or not _is_json_stream(handler):
                    return None
                found = handler
            if not logger.propagate:
                break
            logger = logger.parent
        return found


def _is_json_stream(handler: logging.Handler) -> TypeGuard[logging.StreamHandler[Any]]:
    """True for a ``logging.StreamHandler`` with our ``JsonFormatter``, taking INFO, unfiltered."""
    return (
        type(handler) is logging.StreamHandler
        and type(handler.formatter) is JsonFormatter
        and handler.level <= logging.INFO
        and not handler.filters
    )


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
        "uvicorn.access": {"handlers": [], "propagate": False},  # ops.middleware replaces it
    },
}


def configure_logging() -> None:
    """Send every log record of this process to stderr as JSON lines."""
    logging.config.dictConfig(LOGGING_CONFIG)
    # Skip what no record here uses; each costs microseconds on every log line (the logging
    # HOWTO's "Optimization" section lists these switches).
    logging._srcfile = None  # no caller file/line look-up
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
