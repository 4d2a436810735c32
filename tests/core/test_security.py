"""Password hashing and the token codec."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import jwt
import pytest

from posts_api.core import security
from posts_api.core.security import (
    InvalidToken,
    TokenCodec,
    bearer_token,
    hash_password,
    verify_password,
)

KEY = "k" * 64


async def test_hash_is_argon2id_salted_and_verifies() -> None:
    first, second = await hash_password("pässwörd 😀"), await hash_password("pässwörd 😀")
    assert first.startswith("$argon2id$")
    assert first != second
    assert await verify_password("pässwörd 😀", first)
    assert not await verify_password("password", first)


async def test_unknown_email_still_pays_for_a_verification() -> None:
    assert not await verify_password("anything", None)


async def test_hashing_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[int] = set()
    real = security._hasher.hash

    def spy(password: str) -> str:
        threads.add(threading.get_ident())
        return real(password)

    monkeypatch.setattr(security._hasher, "hash", spy)
    await hash_password("off the loop")
    assert threading.get_ident() not in threads


async def test_loop_stays_responsive_during_hashing() -> None:
    """While 4 hashes run, a 10 ms ticker keeps ticking (no assertion on speed, only that
    the loop was not blocked for the whole duration)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(hash_password(f"p{i}" * 4) for i in range(4)))
    task.cancel()
    assert ticks > 1


def test_issue_and_verify() -> None:
    codec = TokenCodec(KEY, dt.timedelta(minutes=5))
    issued = codec.issue(42)
    assert issued.expires_in == 300
    assert codec.verify(issued.token) == 42
    claims = jwt.decode(issued.token, KEY, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 300
    assert claims["sub"] == "42"


def test_remembered_tokens_still_expire() -> None:
    codec = TokenCodec(KEY, dt.timedelta(seconds=1))
    token = codec.issue(7).token
    assert codec.verify(token) == 7  # now remembered
    time.sleep(2.1)
    with pytest.raises(InvalidToken):
        codec.verify(token)


def test_a_token_signed_with_another_key_is_refused() -> None:
    token = TokenCodec("o" * 64, dt.timedelta(minutes=5)).issue(1).token
    with pytest.raises(InvalidToken):
        TokenCodec(KEY, dt.timedelta(minutes=5)).verify(token)


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc")],
)
def test_bearer_token_parsing(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer a b", "Bearerabc"])
def test_bearer_token_refusals(header: str | None) -> None:
    with pytest.raises(InvalidToken):
        bearer_token(header)


async def test_hashing_uses_one_low_priority_thread() -> None:
    """Concurrent hashes queue on one thread, which runs at a lower CPU priority than the loop."""
    import os

    seen: set[tuple[int, int]] = set()

    def probe() -> None:
        seen.add(
            (threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        )

    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(security._hashing, probe) for _ in range(8)))
    assert len(seen) == 1
    ((_, niceness),) = seen
    assert niceness >= os.getpriority(os.PRIO_PROCESS, 0) + 1
