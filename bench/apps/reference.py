"""Reference b: the textbook stack doing what posts-api's post routes do, and nothing else.

A minimal FastAPI app with SQLAlchemy Core on the very async engine posts-api builds
(``posts_api.core.db.create_engine``: same driver, pool and connection settings), sending the
same statement(s) per request as the service's repository: GET, POST, PUT and DELETE of
/posts/post. No authentication, cache, middleware or logging: the owner's id comes from the
``X-User-Id`` header. The tables are the service's own, made by ``posts-api migrate`` on the
run's database. posts-api ÷ this app is the issue's "≥ 1.5x reference b" figure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel
from sqlalchemy import Table, delete, insert, select, update

from posts_api.core.config import Settings
from posts_api.core.db import create_engine
from posts_api.posts.models import Post

POSTS = cast(Table, Post.__table__)  # a declarative model's table is a Table
COLUMNS = (POSTS.c.id.label("post_id"), POSTS.c.text, POSTS.c.created_at, POSTS.c.updated_at)


UserId = Annotated[int, Header(alias="X-User-Id")]  # module level: FastAPI resolves it here


class PostIn(BaseModel):
    """The body of a create or an update."""

    text: str


def create_app() -> FastAPI:
    """The app, on the engine the settings in the environment describe (``DATABASE_URL``)."""
    engine = create_engine(Settings())
    returning = engine.dialect.update_returning

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(title="reference b", lifespan=lifespan)

    @app.get("/posts/post/{post_id}")
    async def get_post(post_id: int, user_id: UserId) -> dict[str, Any]:
        stmt = select(*COLUMNS).where(POSTS.c.id == post_id, POSTS.c.user_id == user_id)
        async with engine.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise HTTPException(404, "Post not found")
        return dict(row._mapping)

    @app.post("/posts/post", status_code=201)
    async def create_post(post: PostIn, user_id: UserId) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        stmt = insert(POSTS).values(user_id=user_id, text=post.text, created_at=now, updated_at=now)
        async with engine.begin() as conn:
            result = await conn.execute(stmt)
        return {"post_id": result.inserted_primary_key[0]}  # type: ignore[index]

    @app.put("/posts/post/{post_id}")
    async def update_post(post_id: int, post: PostIn, user_id: UserId) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        owned = (POSTS.c.id == post_id, POSTS.c.user_id == user_id)
        stmt = update(POSTS).where(*owned).values(text=post.text, updated_at=now)
        async with engine.begin() as conn:
            if returning:
                row = (await conn.execute(stmt.returning(*COLUMNS))).one_or_none()
                if row is None:
                    raise HTTPException(404, "Post not found")
                return dict(row._mapping)
            if (await conn.execute(stmt)).rowcount == 0:
                raise HTTPException(404, "Post not found")
            created = await conn.scalar(select(POSTS.c.created_at).where(*owned))
        return {"post_id": post_id, "text": post.text, "created_at": created, "updated_at": now}

    @app.delete("/posts/post/{post_id}", status_code=204)
    async def delete_post(post_id: int, user_id: UserId) -> Response:
        stmt = delete(POSTS).where(POSTS.c.id == post_id, POSTS.c.user_id == user_id)
        async with engine.begin() as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise HTTPException(404, "Post not found")
        return Response(status_code=204)

    return app
