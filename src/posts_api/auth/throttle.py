"""Log-in throttling: attempts counted per email and per client address, before any check.

The counters live in the cache backend, so with Redis the limits hold across workers and hosts.
Each attempt is counted first (atomically: the count returns the new value) and compared after,
so however many arrive at once, no more than the limit of them get past a window's count:
past a limit, the attempt is taken back and refused with a 429 before any password is checked.
Only failures stay counted: a success takes its attempt back from the address and clears the
email's count, and an attempt that ends without a verdict (a database error, say) is taken back.
While the cache is unreachable each process counts on its own (``core/cache/counters.py``).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
from collections.abc import AsyncIterator

from posts_api.core.cache import Cache
from posts_api.core.config import Settings
from posts_api.core.errors import TooManyRequests
from posts_api.ops import metrics


class TooManyFailedLogins(TooManyRequests):
    """Too many failed log-ins for this email or from this address; retry later."""

    detail = "Too many failed login attempts; try again later"


class _Verdict(enum.Enum):
    UNKNOWN = enum.auto()
    FAILED = enum.auto()
    SUCCEEDED = enum.auto()


class Attempt:
    """One admitted log-in attempt (or password confirmation): say how it ended."""

    def __init__(self) -> None:
        """Start without a verdict."""
        self.verdict = _Verdict.UNKNOWN

    def failed(self) -> None:
        """A wrong password (or one no longer the account's): it stays counted."""
        self.verdict = _Verdict.FAILED

    def succeeded(self) -> None:
        """The right password: the address's count is taken back, the email's cleared."""
        self.verdict = _Verdict.SUCCEEDED


class LoginThrottle:
    """Fixed-window counters of log-in attempts, per email and per client address.

    Counter names hash the email, so no email address is kept in the cache in clear.
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

    @contextlib.asynccontextmanager
    async def attempt(self, email: str, address: str) -> AsyncIterator[Attempt]:
        """Count an attempt for ``email`` from ``address``, then let the block check it.

        Raises ``TooManyFailedLogins`` (with the seconds left) instead, before the block runs,
        when the count passes either limit. The block marks the ``Attempt`` failed or succeeded;
        one left unmarked (the block raised something else) is taken back, so only failures
        count. One cache round trip to count, one more to take back or clear.
        """
        names = self._names(email, address)
        tally = await self.cache.count(names, self.window)
        limits = (self.max_per_email, self.max_per_address)
        over = [
            seconds
            for value, limit, seconds in zip(tally.values, limits, tally.seconds_left, strict=True)
            if value > limit
        ]
        if over:
            metrics.counters.login_throttled.inc()
            await self.cache.uncount(names, local=tally.local)  # a 429 is not a failed log-in
            raise TooManyFailedLogins(over[0])
        attempt = Attempt()
        try:
            yield attempt
        finally:
            if attempt.verdict is _Verdict.FAILED:
                metrics.counters.login_failures.inc()
            elif attempt.verdict is _Verdict.SUCCEEDED:
                await self.cache.uncount(names[1:], local=tally.local, clear=names[:1])
            else:
                await self.cache.uncount(names, local=tally.local)
