"""Password hashing (Argon2id) and access tokens (JWT, HS256).

Hashing is slow on purpose (Argon2id, 64 MiB, 3 passes, 4 lanes: RFC 9106's second recommended
setting) and runs on one dedicated, low-priority thread per process: argon2 releases the GIL, the
event loop keeps the CPU it needs, a burst of log-ins queues instead of starving cached reads,
and memory holds one hash's 64 MiB at a time.

Token checks are fast and pure: the user id comes from the verified ``sub`` claim, with no
database query. Verified tokens are remembered in a small bounded map until they expire, so a
client that reuses its token pays for the HMAC check once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jwt
from cachetools import LRUCache
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "jti", "sub")
MAX_TOKEN_LENGTH = 2048  # ours are ~200 characters; anything far longer is not ours
ALLOWED_HEADER = frozenset({"alg", "typ"})  # no kid, jku, x5u, ...: nothing to look a key up by
MAX_USER_ID = 2**63 - 1

_hasher = PasswordHash((Argon2Hasher(),))
HASHING_NICENESS = 10  # the hashing thread yields the CPU to the event loop (Linux nice value)


def _lower_priority() -> None:
    """Run the calling thread at a lower CPU priority (Linux: nice applies per thread)."""
    with contextlib.suppress(OSError, AttributeError):  # elsewhere: a normal-priority thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


_hashing = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="password-hashing", initializer=_lower_priority
)
# Verified against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("not a real password: timing equaliser")


class InvalidToken(Exception):
    """The token is missing, malformed, tampered with, expired or lacks a required claim."""


async def hash_password(password: str) -> str:
    """Return an Argon2id hash (salted, encoded with its parameters), computed off the loop."""
    return await asyncio.get_running_loop().run_in_executor(_hashing, _hasher.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Check ``password`` against ``password_hash``, off the loop.

    ``None`` (an unknown email) is checked against a dummy hash and always fails, taking the
    same time as a wrong password: response timing does not tell which emails exist.
    """
    loop = asyncio.get_running_loop()
    if password_hash is None:
        await loop.run_in_executor(_hashing, _hasher.verify, password, _DUMMY_HASH)
        return False
    return await loop.run_in_executor(_hashing, _hasher.verify, password, password_hash)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token and its lifetime in seconds."""

    token: str
    expires_in: int


class TokenCodec:
    """Signs and verifies access tokens with one key.

    ``verify`` keeps up to ``remember`` verified tokens (token -> user id, expiry) so repeated
    requests skip the signature check; an entry is used only until the token's ``exp``.
    """

    def __init__(self, secret: str, lifetime: dt.timedelta, remember: int = 10_000) -> None:
        """Use ``secret`` for HS256 and issue tokens valid for ``lifetime``."""
        self._key = secret
        self._lifetime = lifetime
        self._verified: LRUCache[str, tuple[int, float]] = LRUCache(maxsize=remember)

    def issue(self, user_id: int) -> IssuedToken:
        """Sign a token for ``user_id`` with ``sub``, ``iat``, ``exp`` and a unique ``jti``."""
        now = int(dt.datetime.now(dt.UTC).timestamp())
        seconds = int(self._lifetime.total_seconds())
        claims = {"sub": str(user_id), "iat": now, "exp": now + seconds, "jti": uuid.uuid4().hex}
        return IssuedToken(jwt.encode(claims, self._key, algorithm=ALGORITHM), seconds)

    def verify(self, token: str) -> int:
        """Return the user id a valid token names; raise ``InvalidToken`` otherwise."""
        now = time.time()
        known = self._verified.get(token)
        if known is not None and known[1] > now:
            return known[0]
        user_id, exp = self._decode(token)
        self._verified[token] = (user_id, exp)
        return user_id

    def _decode(self, token: str) -> tuple[int, float]:
        """Full verification: size, header, signature, algorithm, claims."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
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
        sub, jti = claims["sub"], claims["jti"]
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit()):
            raise InvalidToken("sub is not a user id")
        if not isinstance(jti, str) or not jti:
            raise InvalidToken("jti is not a string")
        user_id = int(sub)
        if not 0 < user_id <= MAX_USER_ID:
            raise InvalidToken("sub is out of range")
        return user_id, float(claims["exp"])


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
