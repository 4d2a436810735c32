"""Sign-up and log-in rules.

Emails are compared case-insensitively by storing them lower-cased. Unknown email and wrong
password get the same 401 after the same amount of work. Log-ins go through the throttle
(``auth/throttle.py``) first.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.auth.repository import UserRepository
from posts_api.auth.schemas import CredentialsIn, TokenOut
from posts_api.auth.throttle import LoginThrottle
from posts_api.core.errors import Conflict, Unauthorized
from posts_api.core.security import TokenCodec, hash_password, verify_password


class EmailTaken(Conflict):
    """Sign-up with an email that already has an account."""

    detail = "Email already registered"


class InvalidCredentials(Unauthorized):
    """Log-in with an unknown email or a wrong password (deliberately indistinguishable)."""

    detail = "Invalid email or password"


class AuthService:
    """The account use cases, for one process: built once by ``create_app``, injected per request.

    Each method opens its own session when it needs the database and releases it before it
    returns.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tokens: TokenCodec,
        throttle: LoginThrottle,
    ) -> None:
        """Use ``sessions`` for the database, ``tokens`` to sign, ``throttle`` for log-ins."""
        self.sessions = sessions
        self.tokens = tokens
        self.throttle = throttle

    async def sign_up(self, credentials: CredentialsIn) -> TokenOut:
        """Create an account and return a token for it. Raises ``EmailTaken`` (one INSERT)."""
        password_hash = await hash_password(credentials.password)
        async with self.sessions() as session:
            user_id = await UserRepository(session).add(credentials.email.lower(), password_hash)
        if user_id is None:
            raise EmailTaken()
        return self._token_for(user_id)

    async def log_in(self, credentials: CredentialsIn, client_address: str) -> TokenOut:
        """Check the credentials and return a token (one SELECT).

        Raises ``TooManyFailedLogins`` when throttled, ``InvalidCredentials`` on a bad password
        or unknown email. A failure is counted; a success clears the email's count.
        """
        email = credentials.email.lower()
        await self.throttle.check(email, client_address)
        async with self.sessions() as session:
            found = await UserRepository(session).get_credentials(email)
        user_id, password_hash = found if found is not None else (None, None)
        # Verify even for an unknown email (against a dummy hash): one answer, one timing.
        if not await verify_password(credentials.password, password_hash) or user_id is None:
            await self.throttle.failed(email, client_address)
            raise InvalidCredentials()
        await self.throttle.succeeded(email)
        return self._token_for(user_id)

    def _token_for(self, user_id: int) -> TokenOut:
        issued = self.tokens.issue(user_id)
        return TokenOut(access_token=issued.token, expires_in=issued.expires_in)
