"""Account and session rules: sign-up, log-in, refresh, log-out, password change, deletion.

Emails are compared case-insensitively by storing them lower-cased. Unknown email and wrong
password get the same 401 after the same amount of work. Log-ins, and the password
confirmations of a password change or an account deletion, go through the throttle
(``auth/throttle.py``) first.

Sessions: signup, login and password change start one (and seed its state in the cache);
access tokens carry its ``sid``; a refresh token (``core/security.RefreshCodec``) works once.
Presenting a spent one is reuse (RFC 9700, 4.14.2): the session is revoked. Every revocation
writes the database inside ``SessionCheck.ending``, which marks the user's cached session
states first: when the cache cannot be told, the revocation is refused (``CacheUnavailable``,
a 503) before anything is written, so a 2xx is only given to a revocation that holds on every
host.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from posts_api.auth.repository import SessionRepository, UserRepository
from posts_api.auth.schemas import AccountOut, CredentialsIn, PasswordChangeIn, TokenOut
from posts_api.auth.sessions import SessionCheck
from posts_api.auth.throttle import LoginThrottle
from posts_api.core.db import is_deadlock, transaction, utcnow
from posts_api.core.errors import Conflict, Forbidden, Unauthorized, UserGone
from posts_api.core.security import InvalidToken, PasswordHasher, RefreshCodec, TokenCodec
from posts_api.ops import metrics

log = logging.getLogger(__name__)


class EmailTaken(Conflict):
    """Sign-up with an email that already has an account."""

    detail = "Email already registered"


class InvalidCredentials(Unauthorized):
    """Log-in with an unknown email or a wrong password (deliberately indistinguishable)."""

    detail = "Invalid email or password"


class InvalidRefreshToken(Unauthorized):
    """Unknown, malformed, expired, revoked or already spent: all alike."""

    detail = "Invalid refresh token"


class CredentialsChanged(Unauthorized):
    """A password change or deletion confirmed a password that a racing one has replaced.

    The winner ended every session of the user, the caller's included, so this request is
    refused as its token now is; nothing changed.
    """


class WrongPassword(Forbidden):
    """The password confirming a password change or a deletion is wrong."""

    detail = "Invalid password"


class AuthService:
    """The account use cases, for one process: built once by ``create_app``, injected per request.

    Each method opens its own session when it needs the database and releases it before it
    returns.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        tokens: TokenCodec,
        refresh_tokens: RefreshCodec,
        refresh_lifetime: dt.timedelta,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        session_check: SessionCheck,
        forget_user_data: Callable[[int], Awaitable[None]],
    ) -> None:
        """Wire the service.

        ``forget_user_data(user_id)`` drops what other domains cache for a deleted account
        (the posts list).
        """
        self.sessions = sessions
        self.tokens = tokens
        self.refresh_tokens = refresh_tokens
        self.refresh_lifetime = refresh_lifetime
        self.hasher = hasher
        self.throttle = throttle
        self.session_check = session_check
        self.forget_user_data = forget_user_data

    async def sign_up(self, credentials: CredentialsIn) -> TokenOut:
        """Create an account and start its first session. Raises ``EmailTaken``.

        INSERT user + INSERT session, in one transaction.
        """
        password_hash = await self.hasher.hash(credentials.password)
        expires = utcnow() + self.refresh_lifetime
        async with transaction(self.sessions) as session:
            user_id = await UserRepository(session).add(credentials.email.lower(), password_hash)
            if user_id is None:
                raise EmailTaken()
            sid = await SessionRepository(session).start(
                user_id=user_id, refresh_expires_at=expires
            )
        # Read after the commit, unlike a login's: nobody holds a token of this account yet,
        # so no revocation can have ended this session already.
        version = await self.session_check.version(user_id=user_id)
        await self.session_check.seed(user_id=user_id, session_id=sid, version=version)
        return self._tokens_for(user_id, sid, counter=0)

    async def log_in(self, credentials: CredentialsIn, client_address: str) -> TokenOut:
        """Check the credentials and start a session (one SELECT, one INSERT ... SELECT).

        Raises ``TooManyFailedLogins`` when throttled, ``InvalidCredentials`` on a bad password
        or unknown email, and on a password a racing change replaced (or an account a racing
        deletion removed) after it was read. The attempt is counted first; a failure stays
        counted, a success clears the email's count.
        """
        email = credentials.email.lower()
        async with self.throttle.attempt(email, client_address) as attempt:
            async with self.sessions() as session:
                found = await UserRepository(session).get_credentials(email)
            user_id, password_hash = found if found is not None else (None, None)
            # Verify even for an unknown email (against a dummy hash): one answer, one timing.
            correct = await self.hasher.verify(credentials.password, password_hash)
            sid = None
            if correct and user_id is not None and password_hash is not None:
                # Only if the hash just verified is still the user's: a password change or an
                # account deletion that won the race makes this the wrong password it now is.
                sid = await self._start_session(user_id, password_hash)
            if user_id is None or sid is None:
                attempt.failed()
                raise InvalidCredentials()
            attempt.succeeded()
        return self._tokens_for(user_id, sid, counter=0)

    async def refresh(self, refresh_token: str) -> TokenOut:
        """Spend a refresh token and return the session's next tokens (one UPDATE on success).

        A token that fails its MAC costs no database round trip. A genuine token that cannot be
        spent costs one SELECT more, which tells whether it was already spent (reuse, or the
        loser of a race: both present a spent token); only then is the session revoked (one
        UPDATE), marked in the cache first like every revocation. Raises
        ``InvalidRefreshToken`` for every failure, ``CacheUnavailable`` (nothing revoked) when
        a reuse's revocation could not be made to hold on every host.
        """
        try:
            claim = self.refresh_tokens.verify(refresh_token)
        except InvalidToken:
            raise InvalidRefreshToken() from None
        now = utcnow()
        sid, uid, counter = claim.session_id, claim.user_id, claim.counter
        async with self.sessions() as session:
            repo = SessionRepository(session)
            if await repo.spend_refresh(
                session_id=sid,
                user_id=uid,
                counter=counter,
                now=now,
                refresh_expires_at=now + self.refresh_lifetime,
            ):
                return self._tokens_for(uid, sid, counter=counter + 1)
            # Expired, revoked or unknown: the same 401, with nothing to revoke or mark.
            if not await repo.was_spent(session_id=sid, user_id=uid, counter=counter):
                raise InvalidRefreshToken()
        # Reuse: a revocation, which must hold on every host (marked first) or be refused.
        async with self.session_check.ending(user_id=uid), self.sessions() as session:
            reused = await SessionRepository(session).revoke_if_spent(
                session_id=sid, user_id=uid, counter=counter, now=now
            )
        if reused:
            self._reuse_detected(claim.user_id, claim.session_id)
        raise InvalidRefreshToken()

    def _reuse_detected(self, user_id: int, session_id: str) -> None:
        """A spent refresh token came back and its session was revoked.

        Counts it in ``refresh_token_reuse_total`` and logs a warning (ids only, never the token).
        """
        metrics.counters.refresh_token_reuse.inc()
        log.warning("refresh token reuse: session %s of user %d revoked", session_id, user_id)

    async def log_out(self, *, user_id: int, session_id: str) -> None:
        """End the caller's session (one UPDATE); the user's other sessions keep working.

        Raises ``CacheUnavailable`` (nothing ended) when that could not hold on every host.
        """
        async with self.session_check.ending(user_id=user_id), self.sessions() as session:
            await SessionRepository(session).revoke(
                session_id=session_id, user_id=user_id, now=utcnow()
            )

    async def log_out_everywhere(self, *, user_id: int) -> None:
        """End every session of the user (one UPDATE).

        A password change running at the same time locks the same rows in another order: on
        MariaDB the UPDATE may be the deadlock's victim, rolled back whole, and is then run
        again (at most three times). Raises ``CacheUnavailable`` (nothing ended) when that
        could not hold on every host.
        """
        for attempt in range(3):
            try:
                async with self.session_check.ending(user_id=user_id), self.sessions() as session:
                    await SessionRepository(session).revoke_all(user_id=user_id, now=utcnow())
                return
            except DBAPIError as exc:
                if attempt == 2 or not is_deadlock(exc):
                    raise

    async def get_account(self, *, user_id: int) -> AccountOut:
        """The caller's account as stored (one SELECT). Raises ``UserGone``."""
        async with self.sessions() as session:
            found = await UserRepository(session).get_account(user_id=user_id)
        if found is None:
            raise UserGone()
        email, created_at = found
        return AccountOut(user_id=user_id, email=email, created_at=created_at)

    async def change_password(
        self, change: PasswordChangeIn, *, user_id: int, client_address: str
    ) -> TokenOut:
        """Replace the password, end every session, start a fresh one.

        One SELECT to confirm the current password (throttled like a log-in), then one
        transaction: UPDATE the hash (only from the one just verified), revoke all sessions,
        INSERT the new one (seeded as live). Raises ``TooManyFailedLogins``, ``WrongPassword``,
        ``CredentialsChanged``, ``CacheUnavailable`` (nothing changed) when the revocation could
        not hold on every host.
        """
        verified = await self._confirm_password(change.current_password, user_id, client_address)
        new_hash = await self.hasher.hash(change.new_password)
        now = utcnow()
        async with self.session_check.ending(user_id=user_id) as ending:
            async with transaction(self.sessions) as session:
                if not await UserRepository(session).set_password(
                    user_id=user_id, verified_hash=verified, password_hash=new_hash
                ):
                    raise CredentialsChanged()
                repo = SessionRepository(session)
                await repo.revoke_all(user_id=user_id, now=now)
                sid = await repo.start(
                    user_id=user_id, refresh_expires_at=now + self.refresh_lifetime
                )
            self.session_check.seed_in(ending, user_id=user_id, session_id=sid)
        return self._tokens_for(user_id, sid, counter=0)

    async def delete_account(self, password: str, *, user_id: int, client_address: str) -> None:
        """Remove the account; its posts and sessions go by cascade.

        One SELECT to confirm the password (throttled like a log-in), then one transaction:
        lock the user's row (if the hash is still the one verified), revoke all sessions,
        DELETE the user. Raises ``TooManyFailedLogins``, ``WrongPassword``, ``UserGone``,
        ``CredentialsChanged``, ``CacheUnavailable`` (nothing changed) when the revocation could
        not hold on every host.
        """
        verified = await self._confirm_password(password, user_id, client_address)
        async with (
            self.session_check.ending(user_id=user_id),
            transaction(self.sessions) as session,
        ):
            users = UserRepository(session)
            # The user's row lock first: a racing log-in then waits, and finds the user gone.
            if not await users.lock_if(user_id=user_id, verified_hash=verified):
                raise CredentialsChanged()
            await SessionRepository(session).revoke_all(user_id=user_id, now=utcnow())
            await users.delete(user_id=user_id)
        # No token of the account works any more: its list is unreachable, dropped for tidiness.
        await self.forget_user_data(user_id)

    async def _confirm_password(self, password: str, user_id: int, client_address: str) -> str:
        """Check the account's password as a log-in would: counted by the throttle first.

        Returns the hash it verified, for the change to be made only while it is still the
        user's (a racing change confirmed with the same password must not win twice).
        """
        async with self.sessions() as session:
            found = await UserRepository(session).get_email_and_hash(user_id=user_id)
        if found is None:
            raise UserGone()
        email, password_hash = found
        async with self.throttle.attempt(email, client_address) as attempt:
            if not await self.hasher.verify(password, password_hash):
                attempt.failed()
                raise WrongPassword()
            attempt.succeeded()
        return password_hash

    async def _start_session(self, user_id: int, verified_hash: str) -> str | None:
        """INSERT a new session of the user if ``verified_hash`` is still theirs; its id.

        ``None`` when a racing change or deletion replaced the hash. A session started is
        seeded as live under the version read before the INSERT, so its first request costs
        no SELECT (a revocation landing after the INSERT replaces that version).
        """
        version = await self.session_check.version(user_id=user_id)  # before the INSERT
        async with self.sessions() as session:
            sid = await SessionRepository(session).start_if(
                user_id=user_id,
                verified_hash=verified_hash,
                refresh_expires_at=utcnow() + self.refresh_lifetime,
            )
        if sid is not None:
            await self.session_check.seed(user_id=user_id, session_id=sid, version=version)
        return sid

    def _tokens_for(self, user_id: int, session_id: str, *, counter: int) -> TokenOut:
        issued = self.tokens.issue(user_id, session_id)
        refresh = self.refresh_tokens.issue(user_id=user_id, session_id=session_id, counter=counter)
        return TokenOut(
            access_token=issued.token,
            expires_in=issued.expires_in,
            refresh_token=refresh,
            refresh_expires_in=int(self.refresh_lifetime.total_seconds()),
        )
