"""Verify: did the fix work? The series that opened the incident must be healthy again.

    verification = await verify(execution, series, reader, target, catalog, hold_s, timeout_s)

Healthy means within the *warn* threshold (stricter than the crit line that opened the
incident), on samples newer than the end of the playbook run, continuously for
``hold_s``. Passed as soon as that holds; timed_out if it has not by ``timeout_s``
(paper: 10 min); failed if a series sent no fresh sample at all, since then nothing
can be verified.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from loop.models import Execution, MetricCheck, Verification, VerificationStatus
from rules.catalog import Catalog

LatestReader = Callable[[str, str], tuple[float, float] | None]


def check_metrics(
    catalog: Catalog,
    latest: dict[str, tuple[float, float] | None],
    fresh_after: float,
) -> tuple[MetricCheck, ...]:
    """Pure: one check per series; stale or missing data is never healthy."""
    checks = []
    for series, point in sorted(latest.items()):
        spec = catalog[series]
        fresh = point is not None and point[0] > fresh_after
        value = point[1] if point is not None else None
        healthy = fresh and value is not None and spec.is_healthy(value)
        checks.append(MetricCheck(series=series, healthy=healthy, value=value, threshold=spec.warn))
    return tuple(checks)


async def verify(
    execution: Execution,
    series: Iterable[str],
    read_latest: LatestReader,
    target: str,
    catalog: Catalog,
    hold_s: float,
    timeout_s: float,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.time,
) -> Verification:
    names = sorted(set(series))
    fresh_after = execution.ended.timestamp()
    start = clock()
    healthy_since: float | None = None
    checks: tuple[MetricCheck, ...] = ()
    while True:
        now = clock()
        checks = check_metrics(catalog, {s: read_latest(target, s) for s in names}, fresh_after)
        if all(c.healthy for c in checks):
            healthy_since = now if healthy_since is None else healthy_since
            if now - healthy_since >= hold_s:
                status = VerificationStatus.passed
                break
        else:
            healthy_since = None
        if now - start >= timeout_s:
            no_data = any(c.value is None for c in checks)
            status = VerificationStatus.failed if no_data else VerificationStatus.timed_out
            break
        await asyncio.sleep(poll_s)
    return Verification(
        execution_id=execution.id, status=status, checks=checks, waited_s=round(clock() - start, 3)
    )
