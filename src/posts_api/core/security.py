"""Password hashing, access tokens (JWT), refresh tokens (HMAC) and request authentication.

Hashing is slow on purpose (by default Argon2id, 64 MiB, 3 passes, 4 lanes: RFC 9106's second
recommended setting; the ``ARGON2_*`` settings change it) and runs on one dedicated thread per
process that gets the CPU only when the event loop leaves it idle (``SCHED_IDLE``): argon2
releases the GIL, the event loop keeps the CPU it needs, a burst of log-ins queues instead of
slowing cached reads, and memory holds one hash's 64 MiB at a time.

Token checks are fast and pure: the user id and session id come from the verified ``sub`` and
``sid`` claims, with no database query. Verified tokens are remembered in a small bounded map
until they expire, so a client that reuses its token pays for the HMAC check once. Whether the
session is still live is a separate check (``SessionGuard``) run on every request after it, so
the memo can never let a token of an ended session through.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import jwt
from cachetools import LRUCache
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "jti", "sub", "sid")
MAX_TOKEN_LENGTH = 2048  # ours are ~250 characters; anything far longer is not ours
ALLOWED_HEADER = frozenset({"alg", "typ"})  # no kid, jku, x5u, ...: nothing to look a key up by
MAX_USER_ID = 2**63 - 1
SESSION_ID = re.compile(r"[0-9a-f]{32}")
MAX_REFRESH_TOKEN_LENGTH = 512
MAX_REFRESH_COUNTER = 10**12

HASHING_NICENESS = 10  # where SCHED_IDLE is missing: a lower priority (Linux nice value)


def _lower_priority() -> None:
    """Let the calling thread have the CPU only when the event loop does not want it.

    Linux's ``SCHED_IDLE`` (per thread, like nice): a waking event loop takes the CPU from the
    hashing thread at once. A merely niced thread may keep it for the rest of its time slice,
    milliseconds added to the cached reads that arrive while log-ins hash. Argon2's lane
    threads inherit the policy. Log-ins queue while the CPU is fully busy with requests.
    """
    thread = threading.get_native_id()
    with contextlib.suppress(OSError, AttributeError):  # elsewhere: a normal-priority thread
        os.setpriority(os.PRIO_PROCESS, thread, HASHING_NICENESS)
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))


# One thread per process, shared by every hasher: hashes queue instead of piling up in memory.
_hashing = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="password-hashing", initializer=_lower_priority
)


class InvalidToken(Exception):
    """The token is missing, malformed, tampered with, expired or lacks a required claim.

    Also raised for a well-formed token whose session has ended.
    """


class PasswordHasher:
    """Argon2id hashing and verification with the given costs, off the event loop.

    Costs apply to new hashes only: a stored hash carries its own parameters, so hashes made
    with other costs (1.0's included) still verify.
    """

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        """Hash with ``time_cost`` passes over ``memory_kib`` KiB in ``parallelism`` lanes."""
        self._hasher = PasswordHash(
            (Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism),)
        )
        # Verified against when the email is unknown, so both failures cost the same time (made
        # now, once per process, so that even the first unknown email costs no more).
        self._dummy_hash = self._hasher.hash("not a real password: timing equaliser")

    async def hash(self, password: str) -> str:
        """Return an Argon2id hash (salted, encoded with its parameters), computed off the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_hashing, self._hasher.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Check ``password`` against ``password_hash``, off the loop.

        ``None`` (an unknown email) is checked against a dummy hash made with the same costs and
        always fails, taking the same time as a wrong password: response timing does not tell
        which emails exist.
        """
        loop = asyncio.get_running_loop()
        if password_hash is None:
            await loop.run_in_executor(_hashing, self._hasher.verify, password, self._dummy_hash)
            return False
        return await loop.run_in_executor(_hashing, self._hasher.verify, password, password_hash)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token and its lifetime in seconds."""

    token: str
    expires_in: int


class TokenCodec:
    """Signs and verifies access tokens with one key.

    ``verify`` keeps up to ``remember`` verified tokens (token -> user id, session id, expiry)
    so repeated requests skip the signature check; an entry is used only until the token's
    ``exp``. It says nothing about the session being live: ``SessionGuard`` does.
    """

    def __init__(self, secret: str, lifetime: dt.timedelta, remember: int = 10_000) -> None:
        """Use ``secret`` for HS256 and issue tokens valid for ``lifetime``."""
        self._key = secret
        self._lifetime = lifetime
        self._verified: LRUCache[str, tuple[int, str, float]] = LRUCache(maxsize=remember)

    @property
    def lifetime_seconds(self) -> int:
        """How long an access token lives, in whole seconds."""
        return int(self._lifetime.total_seconds())

    def issue(self, user_id: int, session_id: str) -> IssuedToken:
        """Sign a token for ``user_id`` in session ``session_id``.

        Claims: ``sub``, ``sid``, ``iat``, ``exp`` and a unique ``jti``.
        """
        now = int(dt.datetime.now(dt.UTC).timestamp())
        seconds = self.lifetime_seconds
        claims = {
            "sub": str(user_id),
            "sid": session_id,
            "iat": now,
            "exp": now + seconds,
            "jti": uuid.uuid4().hex,
        }
        return IssuedToken(jwt.encode(claims, self._key, algorithm=ALGORITHM), seconds)

    def verify(self, token: str) -> tuple[int, str]:
        """Return the ``(user_id, session_id)`` a valid token names; raise ``InvalidToken``."""
        now = time.time()
        known = self._verified.get(token)
        if known is not None and known[2] > now:
            return known[0], known[1]
        user_id, session_id, exp = self._decode(token)
        self._verified[token] = (user_id, session_id, exp)
        return user_id, session_id

    def _decode(self, token: str) -> tuple[int, str, float]:
        """Full verification: size, header, signature, algorithm, claims."""
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidToken("not a token of ours (too long, or not ASCII)")
        try:
            header = jwt.get_unverified_header(token)
            if not header.keys() <= ALLOWED_HEADER:
                raise InvalidToken("unexpected token header")
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        sub, jti, sid = claims["sub"], claims["jti"], claims["sid"]
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit()):
            raise InvalidToken("sub is not a user id")
        if not isinstance(jti, str) or not jti:
            raise InvalidToken("jti is not a string")
        if not (isinstance(sid, str) and SESSION_ID.fullmatch(sid)):
            raise InvalidToken("sid is not a session id")
        user_id = int(sub)
        if not 0 < user_id <= MAX_USER_ID:
            raise InvalidToken("sub is out of range")
        return user_id, sid, float(claims["exp"])


@dataclass(frozen=True, slots=True)
class RefreshClaim:
    """What a genuine refresh token says: whose session, which one, and its rotation count."""

    user_id: int
    session_id: str
    counter: int


class RefreshCodec:
    """Refresh tokens: ``{user_id}.{sid}.{counter}.{mac}``, checked by HMAC, stored nowhere.

    The MAC is HMAC-SHA256 under a key derived from ``SECRET_KEY`` (so it is a different key
    from the JWTs'). The database keeps only the session's current counter: someone who reads
    it cannot make a token, and checking one's form and MAC needs no database round trip.
    """

    def __init__(self, secret: str) -> None:
        """Derive the MAC key from ``secret``."""
        self._key = hmac.new(secret.encode(), b"posts-api refresh token key", "sha256").digest()

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, f"refresh:{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, *, user_id: int, session_id: str, counter: int) -> str:
        """The refresh token for rotation ``counter`` of the session."""
        payload = f"{user_id}.{session_id}.{counter}"
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str) -> RefreshClaim:
        """Check form, length and MAC (constant-time); raise ``InvalidToken`` on any failure.

        Any string at all is answered so, whatever its length or characters.
        """
        if len(token) > MAX_REFRESH_TOKEN_LENGTH or not token.isascii():
            # Ours are short ASCII; anything else (a lone surrogate, which no encoding takes,
            # included) is refused before it is hashed.
            raise InvalidToken("not a refresh token")
        parts = token.split(".")
        if len(parts) != 4:
            raise InvalidToken("not a refresh token")
        user, sid, counter, mac = parts
        payload = f"{user}.{sid}.{counter}"
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise InvalidToken("bad refresh token MAC")
        # Only our own tokens get this far, but check their fields all the same.
        if not (user.isascii() and user.isdigit() and 0 < int(user) <= MAX_USER_ID):
            raise InvalidToken("bad user id")
        if not SESSION_ID.fullmatch(sid):
            raise InvalidToken("bad session id")
        if not (counter.isascii() and counter.isdigit() and int(counter) < MAX_REFRESH_COUNTER):
            raise InvalidToken("bad counter")
        return RefreshClaim(int(user), sid, int(counter))


Entry = tuple[bytes | None, bytes | None]
"""A versioned cache entry as read: ``(value or None, tag for a fresh value or None)``."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a verified token of a live session, plus cache entries read alongside.

    ``prefetched`` holds, in order, the entries the route asked for (see ``authenticate``): they
    ride in the same cache round trip as the session check.
    """

    user_id: int
    session_id: str
    prefetched: tuple[Entry, ...] = ()


class SessionGuard(Protocol):
    """Tells whether a session is live. Implemented by the auth domain (it owns the table)."""

    async def check(
        self, *, user_id: int, session_id: str, prefetch: Sequence[str] = ()
    ) -> tuple[Entry, ...]:
        """Raise ``InvalidToken`` unless ``session_id`` is a live session of ``user_id``.

        Returns the versioned cache entries named in ``prefetch``, read in the same round trip.
        """
        ...


async def authenticate(
    authorization: str | None,
    *,
    tokens: TokenCodec,
    guard: SessionGuard,
    prefetch: Callable[[int], Sequence[str]] | None = None,
) -> Caller:
    """The one authentication of a request: a valid bearer token of a live session.

    Used by the bearer dependency and by the 422 handler alike. ``prefetch(user_id)`` names
    cache entries to read in the session check's round trip. Raises ``InvalidToken``.
    """
    user_id, session_id = tokens.verify(bearer_token(authorization))
    names = prefetch(user_id) if prefetch is not None else ()
    entries = await guard.check(user_id=user_id, session_id=session_id, prefetch=names)
    return Caller(user_id, session_id, entries)


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an ``Authorization: Bearer <token>`` header value.

    The scheme name is case-insensitive, as HTTP says. Raises ``InvalidToken`` when the header
    is missing, uses another scheme or carries no token.
    """
    if not authorization:
        raise InvalidToken("no Authorization header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise InvalidToken("not a bearer token")
    return token
