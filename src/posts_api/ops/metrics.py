"""The Prometheus series of the service, and how a ``serve`` aggregates them over its workers.

Metrics are per process, as prometheus-client keeps them. Under ``posts-api serve`` every worker
writes its values to files in a directory the command owns (``PROMETHEUS_MULTIPROC_DIR``, the
client's multiprocess mode) and a scrape of any worker sums them all. In a single process with
no such directory (tests calling ``create_app``) the values live in memory.

The multiprocess mode is chosen by prometheus-client when it is first imported, so ``serve``
sets the variable before anything imports this module.

Writing a value in that mode takes a lock and writes a file, several times per request. So each
request adds its observations to plain in-process tallies (``pending``) instead, and ``flush``
moves them into the Prometheus values: every ``FLUSH_SECONDS`` (``flush_periodically``, run by
the app's lifespan), at shutdown, and before this process answers a scrape. A scrape therefore
shows its own worker's requests at once and the other workers' within ``FLUSH_SECONDS``.

No label holds a user's data: ``route`` is a route's path template (or ``UNMATCHED``), ``method``
one of a fixed set, ``status`` a status code.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_SECONDS = 1.0
"""The longest a recorded observation waits before a scrape of another worker can see it."""
DURATION_BUCKETS = Histogram.DEFAULT_BUCKETS

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
    buckets=DURATION_BUCKETS,
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


class Incrementable(Protocol):
    """What a domain counter offers its callers: ``inc()``."""

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``."""


class _BatchedCounter:
    """A counter child's increments, held in process until the next ``flush``."""

    def __init__(self, target: Counter) -> None:
        """Batch the increments of ``target`` (a counter or one of its label children)."""
        self.target = target
        self.pending = 0.0

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (written to ``target`` at the next flush)."""
        self.pending += amount

    def flush(self) -> None:
        """Write what was added since the last flush."""
        if self.pending:
            self.target.inc(self.pending)
            self.pending = 0.0


# Both results are exposed from the start, at 0.
_CACHE_HIT = _BatchedCounter(POSTS_CACHE_REQUESTS.labels(result="hit"))
_CACHE_MISS = _BatchedCounter(POSTS_CACHE_REQUESTS.labels(result="miss"))
_LOGIN_FAILURES = _BatchedCounter(LOGIN_FAILURES)
_LOGIN_THROTTLED = _BatchedCounter(LOGIN_THROTTLED)
_REFRESH_TOKEN_REUSE = _BatchedCounter(REFRESH_TOKEN_REUSE)
_DOMAIN_COUNTERS = (
    _CACHE_HIT,
    _CACHE_MISS,
    _LOGIN_FAILURES,
    _LOGIN_THROTTLED,
    _REFRESH_TOKEN_REUSE,
)


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
        self.login_failures: Incrementable = _LOGIN_FAILURES if enabled else _OFF
        self.login_throttled: Incrementable = _LOGIN_THROTTLED if enabled else _OFF
        self.refresh_token_reuse: Incrementable = _REFRESH_TOKEN_REUSE if enabled else _OFF


counters = DomainCounters(enabled=False)
"""The process's domain counters; ``create_app`` switches them on with ``METRICS_ENABLED``."""


def set_recording(*, enabled: bool) -> None:
    """Make the domain counters of this process count (or not).

    One switch per process, as the counters themselves are per process: ``serve`` builds one
    app per worker; in tests the app built last decides.
    """
    global counters
    counters = DomainCounters(enabled=enabled)


class _DurationTally:
    """One histogram child's observations since the last flush: a count per bucket, and the sum."""

    def __init__(self) -> None:
        """Start empty."""
        self.counts = [0] * len(DURATION_BUCKETS)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count ``seconds`` in the first bucket whose upper bound holds it, as Prometheus does."""
        self.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds

    def write_to(self, child: Histogram) -> None:
        """Add these observations to ``child``: what as many ``child.observe`` calls would add.

        prometheus-client has no call for many observations at once, so this writes the
        child's per-bucket values and its sum directly (``test_metrics`` checks the result
        against ``observe``).
        """
        child._sum.inc(self.total)
        for bucket, count in zip(child._buckets, self.counts, strict=True):
            if count:
                bucket.inc(count)


class PendingRequests:
    """The HTTP series' observations of this process not yet written to Prometheus values."""

    def __init__(self) -> None:
        """Start empty."""
        self.answered: dict[tuple[str, str, int], int] = {}
        self.durations: dict[tuple[str, str], _DurationTally] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        key = (method, route, status)
        self.answered[key] = self.answered.get(key, 0) + 1
        tally = self.durations.get((method, route))
        if tally is None:
            tally = self.durations[method, route] = _DurationTally()
        tally.observe(seconds)

    def flush(self) -> None:
        """Write the counts and durations recorded since the last flush, then start afresh."""
        answered, durations = self.answered, self.durations
        self.answered, self.durations = {}, {}
        for (method, route, status), count in answered.items():
            HTTP_REQUESTS.labels(method, route, str(status)).inc(count)
        for (method, route), tally in durations.items():
            tally.write_to(HTTP_DURATION.labels(method, route))


pending = PendingRequests()
"""This process's HTTP observations awaiting ``flush``."""


def flush() -> None:
    """Write every observation this process holds into its Prometheus values."""
    pending.flush()
    for counter in _DOMAIN_COUNTERS:
        counter.flush()


async def flush_periodically(seconds: float = FLUSH_SECONDS) -> None:
    """Flush every ``seconds`` until cancelled, and once more then (the app's lifespan runs it)."""
    try:
        while True:
            await asyncio.sleep(seconds)
            flush()
    finally:
        flush()


def scrape_registry() -> CollectorRegistry:
    """The registry a scrape reads: every worker's files in multiprocess mode, else this process."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` (this process's observations flushed first)."""
    flush()
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Tell the multiprocess files that worker ``pid`` is gone (no-op outside that mode).

    Counters and histograms of a dead worker keep counting in the sums (they are totals); only
    live gauges would be dropped.
    """
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
