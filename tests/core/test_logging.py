"""The JSON log lines, and the request log's direct line matching what logging would write."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from posts_api.core.logging import AccessEntry, AccessLog, JsonFormatter, access_line

REQUEST = {
    "method": "GET",
    "path": "/posts",
    "status": 200,
    "duration_ms": 0.125,
    "client": "127.0.0.1",
    "request_id": "abc-1",
}


def formatted(created: float, **fields: object) -> str:
    """What ``JsonFormatter`` writes for an access record with these fields."""
    record = logging.makeLogRecord(
        {"name": "posts_api.access", "levelno": logging.INFO, "levelname": "INFO"}
        | {"msg": "request", "created": created}
        | fields
    )
    return JsonFormatter().format(record) + "\n"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"client": None},
        {"path": '/odd "path" \\ with é and \x01', "method": "BREW"},
        {"status": 500, "duration_ms": 1234.5},
    ],
)
def test_the_direct_line_is_what_the_formatter_writes(changes: dict[str, object]) -> None:
    fields = REQUEST | changes
    created = 1_780_000_000.0625
    line = access_line(AccessEntry(created=created, **fields))  # type: ignore[arg-type]
    assert line == formatted(created, **fields)
    assert json.loads(line)["path"] == fields["path"]


@pytest.fixture
def isolated() -> Iterator[logging.Logger]:
    """A logger that does not propagate: its records reach only the handlers a test sets."""
    logger = logging.getLogger("posts_api.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger
    logger.propagate = True
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)


def only(logger: logging.Logger, *handlers: logging.Handler) -> None:
    """Make ``handlers`` the only ones of ``logger`` (pytest adds its own capture to it)."""
    logger.handlers[:] = handlers


def json_stream(stream: io.StringIO) -> logging.StreamHandler[io.StringIO]:
    """A handler like the one ``LOGGING_CONFIG`` installs, writing to ``stream``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    return handler


class Collector(logging.Handler):
    """Keeps every record it gets."""

    def __init__(self) -> None:
        """Start with none."""
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record``."""
        self.records.append(record)


def test_the_line_is_written_straight_to_a_lone_json_stream(isolated: logging.Logger) -> None:
    stream = io.StringIO()
    only(isolated, json_stream(stream))
    AccessLog().write(AccessEntry(created=1_780_000_000.0, **REQUEST))  # type: ignore[arg-type]
    assert stream.getvalue() == formatted(1_780_000_000.0, **REQUEST)


def test_any_other_setup_gets_a_record(isolated: logging.Logger) -> None:
    stream, records = io.StringIO(), Collector()
    only(isolated, json_stream(stream), records)
    AccessLog().write(AccessEntry(created=1_780_000_000.0, **REQUEST))  # type: ignore[arg-type]
    assert [(r.method, r.path, r.request_id) for r in records.records] == [  # type: ignore[attr-defined]
        ("GET", "/posts", "abc-1")
    ]
    assert json.loads(stream.getvalue())["request_id"] == "abc-1"


def test_the_log_is_switched_off_by_its_level(isolated: logging.Logger) -> None:
    stream = io.StringIO()
    only(isolated, json_stream(stream))
    isolated.setLevel(logging.WARNING)
    AccessLog().write(AccessEntry(created=1_780_000_000.0, **REQUEST))  # type: ignore[arg-type]
    assert stream.getvalue() == ""
