"""Statements compiled for the driver convert values exactly as a session would."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.dialects.mysql.asyncmy import MySQLDialect_asyncmy
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import Dialect

from posts_api.core.driver import compile_for
from posts_api.posts.repository import INSERT, SELECT_OWNED

DIALECTS = {
    "sqlite": SQLiteDialect_aiosqlite(),
    "mysql": MySQLDialect_asyncmy(),
    "postgres": PGDialect_asyncpg(),  # type: ignore[no-untyped-call]
}
AWARE = dt.datetime(2026, 1, 2, 4, 4, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
NAIVE_UTC = dt.datetime(2026, 1, 2, 3, 4, 5, 123456)
TEXT = "a\x00é😀"


@pytest.mark.parametrize("name", DIALECTS)
def test_parameters_go_through_the_column_types(name: str) -> None:
    """Text is UTF-8 bytes on PostgreSQL only; timestamps are naive UTC (SQLite: its text form)."""
    dialect: Dialect = DIALECTS[name]
    compiled = compile_for(INSERT, dialect)
    values = dict(
        zip(
            compiled.names,
            compiled.parameters({"user_id": 7, "text": TEXT, "now": AWARE}),
            strict=False,
        )
    )
    assert values["user_id"] == 7
    assert values["text"] == (TEXT.encode() if name == "postgres" else TEXT)
    expected = "2026-01-02 03:04:05.123456" if name == "sqlite" else NAIVE_UTC
    assert values["now"] == expected


@pytest.mark.parametrize("name", DIALECTS)
def test_rows_come_back_as_the_api_sees_them(name: str) -> None:
    """A row as the driver returns it becomes ``str`` text and aware UTC timestamps."""
    dialect = DIALECTS[name]
    compiled = compile_for(SELECT_OWNED, dialect)
    stored_text = TEXT.encode() if name == "postgres" else TEXT
    stamp = "2026-01-02 03:04:05.123456" if name == "sqlite" else NAIVE_UTC
    row = compiled.row((1, stored_text, stamp, stamp))
    assert row == (1, TEXT, NAIVE_UTC.replace(tzinfo=dt.UTC), NAIVE_UTC.replace(tzinfo=dt.UTC))
    assert compiled.names == ("post_id", "user_id")


def test_a_naive_timestamp_is_refused() -> None:
    """``UTCDateTime``'s rule holds on the driver path too: a naive value has no known zone."""
    compiled = compile_for(INSERT, DIALECTS["sqlite"])
    with pytest.raises(ValueError, match="aware"):
        compiled.parameters({"user_id": 1, "text": "x", "now": NAIVE_UTC})
