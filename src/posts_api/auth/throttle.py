"""Log-in throttling: failed log-ins counted per email and per client address.

The counters live in the cache backend, so with Redis the limits hold across workers and hosts.
Past a limit, a log-in is refused with a 429 before any password is checked; only failures
count, and a success clears its email's count.
"""

from __future__ import annotations

import hashlib

from posts_api.core.cache import Cache
from posts_api.core.config import Settings
from posts_api.core.errors import TooManyRequests
from posts_api.ops import metrics


class TooManyFailedLogins(TooManyRequests):
    """Too many failed log-ins for this email or from this address; retry later."""

    detail = "Too many failed login attempts; try again later"


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
        if email_count >= self.max_per_email or address_count >= self.max_per_address:
            metrics.counters.login_throttled.inc()
        if email_count >= self.max_per_email:
            raise TooManyFailedLogins(await self.cache.seconds_left(by_email) or self.window)
        if address_count >= self.max_per_address:
            raise TooManyFailedLogins(await self.cache.seconds_left(by_address) or self.window)

    async def failed(self, email: str, address: str) -> None:
        """Count one failed log-in against the email and the address."""
        metrics.counters.login_failures.inc()
        await self.cache.count(self._names(email, address), self.window)

    async def succeeded(self, email: str) -> None:
        """Clear the email's failures (the address keeps its count)."""
        await self.cache.reset(self._names(email, "")[0])
