"""The migrations build exactly what the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from posts_api.core.db import Base, create_engine
from tests.conftest import make_settings


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_match_the_migrated_schema(migrated: dict[str, Any]) -> None:
    engine = create_engine(make_settings(migrated), autocommit=False)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            columns = await connection.run_sync(
                lambda c: {col["name"]: col for col in inspect(c).get_columns("posts")}
            )
            foreign_keys = await connection.run_sync(lambda c: inspect(c).get_foreign_keys("posts"))
    finally:
        await engine.dispose()
    assert foreign_keys[0]["options"].get("ondelete") == "CASCADE"
    if engine.dialect.name != "sqlite":
        assert "MEDIUMTEXT" in str(columns["text"]["type"]).upper()  # 16 MiB, not TEXT's 64 KiB
