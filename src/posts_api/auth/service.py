"""Sign-up and log-in rules, including log-in throttling.

Emails are compared case-insensitively by storing them lower-cased. Unknown email and wrong
password get the same 401 after the same amount of work. Failed log-ins are counted per email
and per client address in the cache (shared by workers and hosts through Redis); past the
limits, attempts are refused with a 429 before any password is checked.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.ext.asyncio import AsyncSession

from posts_api.auth.repository import UserRepository
from posts_api.auth.schemas import CredentialsIn, TokenOut
from posts_api.core.cache import Cache
from posts_api.core.config import Settings
from posts_api.core.errors import Conflict, TooManyRequests, Unauthorized
from posts_api.core.security import TokenCodec, hash_password, verify_password


class EmailTaken(Conflict):
    """Sign-up with an email that already has an account."""

    detail = "Email already registered"


class InvalidCredentials(Unauthorized):
    """Log-in with an unknown email or a wrong password (deliberately indistinguishable)."""

    detail = "Invalid email or password"


class TooManyFailedLogins(TooManyRequests):
    """Too many failed log-ins for this email or from this address; retry later."""

    detail = "Too many failed login attempts; try again later"


def _token_out(tokens: TokenCodec, user_id: int) -> TokenOut:
    issued = tokens.issue(user_id)
    return TokenOut(access_token=issued.token, expires_in=issued.expires_in)


async def sign_up(
    session: AsyncSession, tokens: TokenCodec, credentials: CredentialsIn
) -> TokenOut:
    """Create an account and return a token for it. Raises ``EmailTaken`` (one INSERT)."""
    password_hash = await hash_password(credentials.password)
    user_id = await UserRepository(session).add(credentials.email.lower(), password_hash)
    if user_id is None:
        raise EmailTaken()
    return _token_out(tokens, user_id)


async def log_in(
    session: AsyncSession,
    cache: Cache,
    tokens: TokenCodec,
    settings: Settings,
    credentials: CredentialsIn,
    client_address: str,
) -> TokenOut:
    """Check the credentials and return a token (one SELECT).

    Raises ``TooManyFailedLogins`` when throttled, ``InvalidCredentials`` on a bad password or
    unknown email. A failure is counted; a success clears the email's count.
    """
    email = credentials.email.lower()
    throttle = LoginThrottle(cache, settings)
    await throttle.check(email, client_address)
    found = await UserRepository(session).get_credentials(email)
    user_id, password_hash = found if found is not None else (None, None)
    # Verify even for an unknown email (against a dummy hash): one answer, one timing.
    if not await verify_password(credentials.password, password_hash) or user_id is None:
        await throttle.failed(email, client_address)
        raise InvalidCredentials()
    await throttle.succeeded(email)
    return _token_out(tokens, user_id)


class LoginThrottle:
    """Fixed-window counters of failed log-ins, per email and per client address.

    Counter names hash the email, so no email address is kept in the cache in clear. If the cache
    is unreachable, log-ins are not throttled (the cache logs a warning).
    """

    def __init__(self, cache: Cache, settings: Settings) -> None:
        """Use the limits and window from ``settings``."""
        self.cache = cache
        self.window = settings.login_failure_window_seconds
        self.max_per_email = settings.login_max_failures_per_email
        self.max_per_address = settings.login_max_failures_per_address

    @staticmethod
    def _names(email: str, address: str) -> tuple[str, str]:
        digest = hashlib.sha256(email.encode()).hexdigest()[:32]
        return f"login-fail:email:{digest}", f"login-fail:addr:{address}"

    async def check(self, email: str, address: str) -> None:
        """Raise ``TooManyFailedLogins`` (with the seconds left) if either limit is reached."""
        by_email, by_address = self._names(email, address)
        email_count, address_count = await self.cache.counts((by_email, by_address))
        if email_count >= self.max_per_email:
            raise TooManyFailedLogins(await self.cache.seconds_left(by_email) or self.window)
        if address_count >= self.max_per_address:
            raise TooManyFailedLogins(await self.cache.seconds_left(by_address) or self.window)

    async def failed(self, email: str, address: str) -> None:
        """Count one failed log-in against the email and the address."""
        await self.cache.count(self._names(email, address), self.window)

    async def succeeded(self, email: str) -> None:
        """Clear the email's failures (the address keeps its count)."""
        await self.cache.reset(self._names(email, "")[0])
