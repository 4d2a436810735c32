"""Structured logs: one JSON line per record on stderr.

The per-request record is written by ``posts_api.ops.middleware`` (logger ``posts_api.access``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
from typing import Any


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
        "uvicorn.access": {"handlers": [], "propagate": False},  # ops.middleware replaces it
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
