"""Verify: did the fix work? The series that opened the incident must be healthy again.

    verification = await verify(execution, plan.verification, monitor.latest, target, catalog,
                                read_sqi=analyzer_sqi)

Healthy means within the *warn* threshold (stricter than the crit line that opened the
incident), on samples newer than the end of the playbook run, continuously for
``hold_s``. Passed as soon as that holds; timed_out if it has not by ``deadline_s``
(paper: 10 min); failed if a series sent no fresh sample at all, since then nothing
can be verified. A *level* series (an Alertmanager alert's: its point holds until the next
notification, docs/INTAKE.md) counts from the start of the run instead: Alertmanager sends
a resolution once, and a service the fix brought back can resolve its alert while the
playbook is still finishing. All of it is the remediation plan's VerificationPlan (kernel/plan.py:
the series that opened the incident and the solution's own, its conditions such as
``cache_utilization_pct < 85``, the SQI floor, paper: alert below 80, the hold and the
deadline); every check must hold at the same time for the whole hold period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping

from kernel.models import Execution, MetricCheck, Verification, VerificationStatus
from kernel.plan import Condition, VerificationPlan
from rules.catalog import Catalog

LatestReader = Callable[[str, str], tuple[float, float] | None]
SQIReader = Callable[[str], tuple[float, tuple[str, ...]] | None]  # (sqi, dragging components)


Freshness = float | Mapping[str, float]  # one bound, or one per series


def _after(fresh_after: Freshness, series: str) -> float:
    return fresh_after if isinstance(fresh_after, int | float) else fresh_after[series]


def check_metrics(
    catalog: Catalog,
    latest: dict[str, tuple[float, float] | None],
    fresh_after: Freshness,
) -> tuple[MetricCheck, ...]:
    """Pure: one check per series; stale or missing data is never healthy."""
    checks = []
    for series, point in sorted(latest.items()):
        spec = catalog[series]
        fresh = point is not None and point[0] > _after(fresh_after, series)
        value = point[1] if point is not None else None
        healthy = fresh and value is not None and spec.is_healthy(value)
        checks.append(MetricCheck(series=series, healthy=healthy, value=value, threshold=spec.warn))
    return tuple(checks)


def check_conditions(
    catalog: Catalog,
    conditions: Iterable[Condition],
    latest: dict[str, tuple[float, float] | None],
    fresh_after: Freshness,
) -> tuple[MetricCheck, ...]:
    """Pure: one check per condition, on fresh samples only."""
    checks = []
    for cond in conditions:
        point = latest.get(cond.series)
        fresh = point is not None and point[0] > _after(fresh_after, cond.series)
        value = point[1] if point is not None else None
        spec = catalog.get(cond.series)
        ok = fresh and cond.holds(value, spec.is_healthy if spec else None)
        threshold = cond.value if cond.value is not None else (spec.warn if spec else 0.0)
        checks.append(MetricCheck(series=str(cond), healthy=ok, value=value, threshold=threshold))
    return tuple(checks)


def check_sqi(
    sqi: float | None,
    sqi_min: float | None,
    dragging: Iterable[str] = (),
    component: str | None = None,
) -> tuple[MetricCheck, ...]:
    """Pure: the SQI floor, when there is one and the target reports SQI metrics. With the
    incident's ``component``, an SQI held down only by *other* components (another fault
    on the same target) does not fail this fix: that component must just not drag it."""
    if sqi_min is None or sqi is None:
        return ()
    others_only = component is not None and component not in set(dragging)
    healthy = sqi >= sqi_min or others_only
    name = "sqi" if sqi >= sqi_min or component is None else f"sqi (dragged by {component})"
    if healthy and sqi < sqi_min:
        name = f"sqi (not dragged by {component})"
    return (MetricCheck(series=name, healthy=healthy, value=sqi, threshold=sqi_min),)


def _sqi_checks(
    reading: tuple[float, tuple[str, ...]] | None, sqi_min: float | None, component: str | None
) -> tuple[MetricCheck, ...]:
    if reading is None:
        return ()
    return check_sqi(reading[0], sqi_min, reading[1], component)


async def verify(
    execution: Execution,
    plan: VerificationPlan,
    read_latest: LatestReader,
    target: str,
    catalog: Catalog,
    *,
    read_sqi: SQIReader | None = None,
    levels: frozenset[str] = frozenset(),
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.time,
) -> Verification:
    """``levels``: series whose point holds until the next one (alert series), fresh from
    the run's start rather than its end."""
    conds = plan.conditions
    metric_names = sorted(set(plan.series))
    names = sorted(set(metric_names) | {c.series for c in conds})
    hold_s, timeout_s, sqi_min, component = (
        plan.hold_s,
        plan.deadline_s,
        plan.sqi_min,
        plan.component,
    )
    ended, started = execution.ended.timestamp(), execution.started.timestamp()
    fresh_after: Mapping[str, float] = {s: started if s in levels else ended for s in names}
    start = clock()
    healthy_since: float | None = None
    checks: tuple[MetricCheck, ...] = ()
    while True:
        now = clock()
        latest = {s: read_latest(target, s) for s in names}
        checks = (
            check_metrics(catalog, {s: latest[s] for s in metric_names}, fresh_after)
            + check_conditions(catalog, conds, latest, fresh_after)
            + _sqi_checks(read_sqi(target) if read_sqi else None, sqi_min, component)
        )
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
