"""The batched HTTP and domain observations: once flushed, the very values direct calls write."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram

from posts_api.ops import metrics

DURATIONS = [0.0, 0.004, 0.005, 0.0051, 0.3, 2.5, 9.9, 10.0, 42.0]


def sample_values(registry: CollectorRegistry, name: str, route: str) -> dict[str, float]:
    """Each sample of ``name`` for ``route``, keyed by sample name and ``le``."""
    return {
        f"{s.name}{s.labels.get('le', '')}": s.value
        for family in registry.collect()
        for s in family.samples
        if family.name == name
        and s.labels.get("route") == route
        and not s.name.endswith("_created")
    }


def test_flushed_durations_equal_direct_observations() -> None:
    route = "/tests/batched-durations"
    for seconds in DURATIONS:
        metrics.pending.record("GET", route, 200, seconds)
    assert sample_values(metrics.REGISTRY, "http_request_duration_seconds", route) == {}
    metrics.flush()

    direct = CollectorRegistry()
    histogram = Histogram(
        "http_request_duration_seconds",
        "",
        ("method", "route"),
        registry=direct,
        buckets=metrics.DURATION_BUCKETS,
    )
    for seconds in DURATIONS:
        histogram.labels("GET", route).observe(seconds)
    assert sample_values(metrics.REGISTRY, "http_request_duration_seconds", route) == (
        sample_values(direct, "http_request_duration_seconds", route)
    )
    counted = sample_values(metrics.REGISTRY, "http_requests", route)
    assert counted == {"http_requests_total": len(DURATIONS)}


def test_domain_counters_are_written_at_the_flush() -> None:
    counters = metrics.DomainCounters(enabled=True)
    before = metrics.LOGIN_THROTTLED._value.get()
    counters.login_throttled.inc()
    counters.login_throttled.inc()
    assert metrics.LOGIN_THROTTLED._value.get() == before
    metrics.flush()
    assert metrics.LOGIN_THROTTLED._value.get() == before + 2


async def test_observations_are_flushed_periodically_and_when_stopped() -> None:
    route = "/tests/periodic"
    flushing = asyncio.create_task(metrics.flush_periodically(0.05))
    metrics.pending.record("GET", route, 200, 0.01)
    await asyncio.sleep(0.2)
    assert sample_values(metrics.REGISTRY, "http_requests", route) == {"http_requests_total": 1}
    metrics.pending.record("GET", route, 200, 0.01)
    flushing.cancel()
    await asyncio.wait([flushing])
    assert sample_values(metrics.REGISTRY, "http_requests", route) == {"http_requests_total": 2}
