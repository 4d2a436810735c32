"""Session rules below the HTTP layer: the repository's conditional statements, the session
check's cache use, and the transaction helper, on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt

import anyio
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from posts_api.auth.repository import SessionRepository
from posts_api.auth.sessions import SessionCheck
from posts_api.core.db import transaction, utcnow
from posts_api.core.security import InvalidToken
from tests.support import StatementLog, User


async def test_a_refresh_counter_is_spent_once(app: FastAPI, user: User) -> None:
    now = utcnow()
    later = now + dt.timedelta(days=1)

    async def spend(counter: int) -> bool:
        async with app.state.sessions() as session:
            return await SessionRepository(session).spend_refresh(
                session_id=user.sid, user_id=user.id, counter=counter, now=now,
                refresh_expires_at=later,
            )  # fmt: skip

    results = await asyncio.gather(*(spend(0) for _ in range(10)))
    assert results.count(True) == 1
    assert not await spend(0)
    assert await spend(1)


async def test_only_a_spent_counter_revokes(app: FastAPI, user: User) -> None:
    sid, uid = user.sid, user.id
    async with app.state.sessions() as session:
        repo = SessionRepository(session)
        # Counter 0 is the live one: presenting it again is not reuse; a future one neither.
        for counter in (0, 5):
            assert not await repo.revoke_if_spent(
                session_id=sid, user_id=uid, counter=counter, now=utcnow()
            )
        assert await repo.live_owner(session_id=sid) == uid
        later = utcnow() + dt.timedelta(days=1)
        assert await repo.spend_refresh(
            session_id=sid, user_id=uid, counter=0, now=utcnow(), refresh_expires_at=later
        )
        assert await repo.revoke_if_spent(session_id=sid, user_id=uid, counter=0, now=utcnow())
        assert await repo.live_owner(session_id=sid) is None


async def test_an_expired_refresh_token_cannot_be_spent(app: FastAPI, user: User) -> None:
    async with app.state.sessions() as session:
        spent = await SessionRepository(session).spend_refresh(
            session_id=user.sid,
            user_id=user.id,
            counter=0,
            now=utcnow() + dt.timedelta(days=31),
            refresh_expires_at=utcnow() + dt.timedelta(days=62),
        )
    assert not spent


async def test_the_session_check_caches_and_a_revocation_ends_it(
    app: FastAPI, user: User, statements: StatementLog
) -> None:
    check: SessionCheck = app.state.session_guard
    with statements.watching(app) as sent:
        await check.check(user_id=user.id, session_id=user.sid)
        await check.check(user_id=user.id, session_id=user.sid)
    assert len(sent) <= 1  # one SELECT at most (none if an earlier request cached it)
    with pytest.raises(InvalidToken):
        await check.check(user_id=user.id + 1, session_id=user.sid)  # someone else's
    async with check.ending(user_id=user.id), app.state.sessions() as session:
        await SessionRepository(session).revoke(session_id=user.sid, user_id=user.id, now=utcnow())
    with pytest.raises(InvalidToken):
        await check.check(user_id=user.id, session_id=user.sid)


async def test_a_failed_transaction_leaves_nothing(app: FastAPI, user: User) -> None:
    async def revoke_then_fail() -> None:
        async with transaction(app.state.sessions) as session:
            await SessionRepository(session).revoke_all(user_id=user.id, now=utcnow())
            raise RuntimeError("half way")

    with pytest.raises(RuntimeError):
        await revoke_then_fail()
    async with app.state.sessions() as session:
        assert await SessionRepository(session).live_owner(session_id=user.sid) == user.id
        # The connection went back to the pool in autocommit, outside any transaction.
        await session.execute(text("SELECT 1"))


async def test_a_cancelled_transaction_rolls_back(app: FastAPI, user: User) -> None:
    """A request cancelled mid-transaction (a client gone, a timeout) still rolls it back."""
    with anyio.move_on_after(0.5):
        async with transaction(app.state.sessions) as session:
            await SessionRepository(session).revoke_all(user_id=user.id, now=utcnow())
            await anyio.sleep(30)
    async with app.state.sessions() as session:
        assert await SessionRepository(session).live_owner(session_id=user.sid) == user.id
