"""The Prometheus series of the service, and how a ``serve`` aggregates them over its workers.

Metrics are per process, as prometheus-client keeps them. Under ``posts-api serve`` every worker
writes its values to files in a directory the command owns (``PROMETHEUS_MULTIPROC_DIR``, the
client's multiprocess mode) and a scrape of any worker sums them all. In a single process with
no such directory (tests calling ``create_app``) the values live in memory.

The multiprocess mode is chosen by prometheus-client when it is first imported, so ``serve``
sets the variable before anything imports this module.

No label holds a user's data: ``route`` is a route's path template (or ``UNMATCHED``), ``method``
one of a fixed set, ``status`` a status code.
"""

from __future__ import annotations

import os
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's series (the default registry is left alone: no process/platform collectors)."""

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ("method", "route", "status"),
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by method and route template.",
    ("method", "route"),
    registry=REGISTRY,
)
POSTS_CACHE_REQUESTS = Counter(
    "posts_cache_requests_total",
    "Look-ups of a user's post list in the cache (GET /posts), by result.",
    ("result",),
    registry=REGISTRY,
)
LOGIN_FAILURES = Counter(
    "login_failures_total", "Log-ins refused for a wrong email or password.", registry=REGISTRY
)
LOGIN_THROTTLED = Counter(
    "login_throttled_total",
    "Log-ins refused with a 429 because of too many failures.",
    registry=REGISTRY,
)
REFRESH_TOKEN_REUSE = Counter(
    "refresh_token_reuse_total",
    "Refresh tokens presented again after use (the session is revoked).",
    registry=REGISTRY,
)

# Both results are exposed from the start, at 0.
_CACHE_HIT = POSTS_CACHE_REQUESTS.labels(result="hit")
_CACHE_MISS = POSTS_CACHE_REQUESTS.labels(result="miss")


class Incrementable(Protocol):
    """What a domain counter offers its callers: ``inc()``."""

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``."""


class _NotCounted:
    """A counter that counts nothing: what the domains get while metrics are off."""

    def inc(self, amount: float = 1) -> None:
        """Do nothing."""


_OFF = _NotCounted()


class DomainCounters:
    """The counters the domains increment, real or inert depending on ``METRICS_ENABLED``.

    Domains call ``metrics.counters.login_failures.inc()`` and the like: one attribute read and
    one call, with no test of a flag on their side.
    """

    def __init__(self, *, enabled: bool) -> None:
        """Bind the real counters when ``enabled``, inert ones otherwise."""
        self.cache_hit: Incrementable = _CACHE_HIT if enabled else _OFF
        self.cache_miss: Incrementable = _CACHE_MISS if enabled else _OFF
        self.login_failures: Incrementable = LOGIN_FAILURES if enabled else _OFF
        self.login_throttled: Incrementable = LOGIN_THROTTLED if enabled else _OFF
        self.refresh_token_reuse: Incrementable = REFRESH_TOKEN_REUSE if enabled else _OFF


counters = DomainCounters(enabled=False)
"""The process's domain counters; ``create_app`` switches them on with ``METRICS_ENABLED``."""


def set_recording(*, enabled: bool) -> None:
    """Make the domain counters of this process count (or not).

    One switch per process, as the counters themselves are per process: ``serve`` builds one
    app per worker; in tests the app built last decides.
    """
    global counters
    counters = DomainCounters(enabled=enabled)


def scrape_registry() -> CollectorRegistry:
    """The registry a scrape reads: every worker's files in multiprocess mode, else this process."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Tell the multiprocess files that worker ``pid`` is gone (no-op outside that mode).

    Counters and histograms of a dead worker keep counting in the sums (they are totals); only
    live gauges would be dropped.
    """
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
