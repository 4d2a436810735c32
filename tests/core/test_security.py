"""Password hashing, the access token codec and the refresh token codec."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import threading
import time
from typing import Any

import jwt
import pytest
from time_machine import TimeMachineFixture

from posts_api.core import security
from posts_api.core.config import Settings
from posts_api.core.security import (
    InvalidToken,
    PasswordHasher,
    RefreshCodec,
    TokenCodec,
    bearer_token,
)

KEY = "k" * 64
SID = "0123456789abcdef" * 2
CHEAP = PasswordHasher(time_cost=1, memory_kib=8, parallelism=1)
# A hash made by posts-api 1.0 (pwdlib's Argon2 defaults: t=3, m=64 MiB, p=4) for "pässwörd 😀".
HASH_1_0 = (
    "$argon2id$v=19$m=65536,t=3,p=4$0JnqtRHdLtTaeus3H93spg$"
    "xsIJYC/TKKLpn/Ag4LyWXhVz1IAw5TbaS9z6sQjb7X0"
)


async def test_hash_is_argon2id_salted_and_verifies() -> None:
    first, second = await CHEAP.hash("pässwörd 😀"), await CHEAP.hash("pässwörd 😀")
    assert first.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert first != second
    assert await CHEAP.verify("pässwörd 😀", first)
    assert not await CHEAP.verify("password", first)


def test_production_costs_are_the_default() -> None:
    settings = Settings(_env_file=None, secret_key=KEY)
    assert (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism) == (
        3,
        65_536,
        4,
    )


async def test_hashes_made_with_other_costs_still_verify() -> None:
    """A 1.0 hash carries its own parameters: any hasher verifies it."""
    assert await CHEAP.verify("pässwörd 😀", HASH_1_0)
    assert not await CHEAP.verify("password", HASH_1_0)


async def test_unknown_email_still_pays_for_a_verification() -> None:
    assert not await CHEAP.verify("anything", None)


async def test_hashing_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[int] = set()
    hasher = PasswordHasher(time_cost=1, memory_kib=8, parallelism=1)
    real = hasher._hasher.hash

    def spy(password: str) -> str:
        threads.add(threading.get_ident())
        return real(password)

    monkeypatch.setattr(hasher._hasher, "hash", spy)
    await hasher.hash("off the loop")
    assert threads
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
    production = PasswordHasher(time_cost=3, memory_kib=65_536, parallelism=4)
    await asyncio.gather(*(production.hash(f"p{i}" * 4) for i in range(4)))
    task.cancel()
    assert ticks > 1


def test_issue_and_verify() -> None:
    codec = TokenCodec(KEY, dt.timedelta(minutes=5))
    issued = codec.issue(42, SID)
    assert issued.expires_in == 300
    assert codec.verify(issued.token) == (42, SID)
    claims = jwt.decode(issued.token, KEY, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 300
    assert claims["sub"] == "42"
    assert claims["sid"] == SID


@pytest.mark.parametrize("sid", [None, "", "ABCDEF0123456789" * 2, SID[:-1], SID + "0", 7])
def test_a_token_without_a_proper_sid_is_refused(sid: object) -> None:
    now = int(time.time())
    claims = {"sub": "1", "iat": now, "exp": now + 60, "jti": "j", "sid": sid}
    token = jwt.encode({k: v for k, v in claims.items() if v is not None}, KEY, algorithm="HS256")
    with pytest.raises(InvalidToken):
        TokenCodec(KEY, dt.timedelta(minutes=5)).verify(token)


def test_remembered_tokens_still_expire(time_machine: TimeMachineFixture) -> None:
    codec = TokenCodec(KEY, dt.timedelta(seconds=1))
    token = codec.issue(7, SID).token
    assert codec.verify(token) == (7, SID)  # now remembered
    time_machine.move_to(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2.1))
    with pytest.raises(InvalidToken):
        codec.verify(token)


def test_a_token_signed_with_another_key_is_refused() -> None:
    token = TokenCodec("o" * 64, dt.timedelta(minutes=5)).issue(1, SID).token
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
    """Concurrent hashes queue on one thread, which runs at a lower CPU priority than the loop:
    on Linux under SCHED_IDLE, so a waking loop takes the CPU back at once."""
    import os

    seen: set[tuple[int, int, int | None]] = set()

    def probe() -> None:
        thread = threading.get_native_id()
        policy = os.sched_getscheduler(thread) if hasattr(os, "sched_getscheduler") else None
        seen.add((thread, os.getpriority(os.PRIO_PROCESS, thread), policy))

    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(security._hashing, probe) for _ in range(8)))
    assert len(seen) == 1
    ((_, niceness, policy),) = seen
    assert niceness >= os.getpriority(os.PRIO_PROCESS, 0) + 1
    if sys.platform == "linux":
        assert policy == os.SCHED_IDLE


def test_refresh_tokens_round_trip_and_are_bound_to_the_key() -> None:
    codec = RefreshCodec(KEY)
    token = codec.issue(user_id=5, session_id=SID, counter=3)
    assert len(token) <= 512
    claim = codec.verify(token)
    assert (claim.user_id, claim.session_id, claim.counter) == (5, SID, 3)
    with pytest.raises(InvalidToken):
        RefreshCodec("o" * 64).verify(token)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace(".3.", ".4.", 1),  # another rotation
        lambda t: "6" + t[1:],  # another user
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # tampered MAC
        lambda t: t + "." + "x",
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t + "x" * 600,
        lambda t: "",
        lambda t: "...",
    ],
)
def test_any_change_to_a_refresh_token_is_refused(change: Any) -> None:
    codec = RefreshCodec(KEY)
    token = codec.issue(user_id=5, session_id=SID, counter=3)
    with pytest.raises(InvalidToken):
        codec.verify(change(token))
