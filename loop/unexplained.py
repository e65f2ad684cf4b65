"""Unexplained faults: the rule-free component ranking on the daemon's own windows.

    ranker = ComponentRanker(monitor, catalog, topology)
    fault = ranker.rank(target, onset=first_abnormal, now=clock())   # UnexplainedFault
    fault.headline()       # "unknown fault on component database (confidence 64%)"

When no rule explains what is wrong with a target (loop/steps/analysis.py), the analyzer
asks which *component* most likely broke. This module runs exactly the code `mendloop
rca` runs (ml.component_rca: :func:`metric_deviations` then :func:`rank_components`,
default :class:`RcaSettings`) over the monitor's windows of the target: each catalog
series becomes a ``Series(component, metric, ts, values)``, the window scored is
``[onset - margin_s, now]`` and its baseline everything the monitor still holds before
it; blame follows the site's dependency graph (the analyzer's ``Topology``). The result
is typed (kernel.models.UnexplainedFault) and never names a fault: decide escalates it
with the most similar past cases and runs nothing (loop/decide.py).

The pure part (:func:`unexplained_fault`) takes the series and the graph; the class only
reads the windows (an adapter over the monitor).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from kernel.models import MetricEvidence, RankedComponent, UnexplainedFault
from ml.component_rca import ComponentScore, RcaSettings, metric_deviations, rank_components
from ml.rca_types import MetricDeviation, Series
from rules.catalog import Catalog

# the window starts this long before the first abnormal sample (the deviation begins a
# little before a threshold is crossed); longer dilutes the window's mean deviation with
# normal samples
MARGIN_S = 5.0
TOP = 5  # components kept in the report
UNKNOWN_FAULT = "unknown"  # the incident's fault when no rule names one


class Windows(Protocol):
    """What the ranking reads of the monitor (loop/monitor.py)."""

    def window(self, target: str, series: str) -> tuple[np.ndarray, np.ndarray]: ...


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _evidence(d: MetricDeviation) -> MetricEvidence:
    return MetricEvidence(
        metric=d.metric,
        score=max(0.0, _finite(d.score)),
        z=_finite(d.z),
        baseline=_finite(d.baseline),
        value=_finite(d.value),
        onset=d.onset,
        shared_with=max(1, d.shared_with),
    )


def _component(c: ComponentScore) -> RankedComponent:
    return RankedComponent(
        component=c.component,
        score=max(0.0, _finite(c.score)),
        confidence=min(1.0, max(0.0, _finite(c.confidence))),
        anomaly=max(0.0, _finite(c.anomaly)),
        anomalous=c.anomalous,
        onset=c.onset,
        evidence=tuple(_evidence(d) for d in c.evidence),
    )


def unexplained_fault(
    series: Sequence[Series],
    dependencies: Mapping[str, Sequence[str]],
    start: float,
    end: float,
    *,
    components: Iterable[str] = (),
    settings: RcaSettings | None = None,
    top: int = TOP,
) -> UnexplainedFault:
    """Pure: the components ranked by blame for what went wrong in ``[start, end]``
    (baseline: every sample before ``start``); the leading ``top`` kept, with evidence."""
    t0 = time.perf_counter()
    cfg = settings or RcaSettings()
    devs = metric_deviations(series, start, end, settings=cfg)
    ranked = rank_components(devs, dependencies, cfg, components=components)
    return UnexplainedFault(
        components=tuple(_component(c) for c in ranked[:top]),
        window_start=start,
        window_end=end,
        series=len(series),
        series_scored=len(devs),
        latency_ms=(time.perf_counter() - t0) * 1000,
    )


class ComponentRanker:
    """Reads a target's windows from the monitor and ranks its components (see the module
    docstring). Thread-safe as far as the monitor is: it only reads copies."""

    def __init__(
        self,
        windows: Windows,
        catalog: Catalog,
        dependencies: Mapping[str, Sequence[str]],
        *,
        settings: RcaSettings | None = None,
        margin_s: float = MARGIN_S,
    ) -> None:
        self.windows = windows
        self.catalog = catalog
        self.dependencies = dependencies
        self.settings = settings or RcaSettings()
        self.margin_s = margin_s

    def series(self, target: str) -> list[Series]:
        """The target's catalog series as the monitor holds them (oldest first)."""
        out = []
        for name in self.catalog:
            ts, values = self.windows.window(target, name)
            if ts.size:
                out.append(Series(self.catalog[name].component, name, ts, values))
        return out

    def rank(self, target: str, onset: float, now: float) -> UnexplainedFault:
        """The ranking for a fault whose first abnormal sample was at ``onset``."""
        start = min(onset, now) - self.margin_s
        return unexplained_fault(
            self.series(target),
            self.dependencies,
            start,
            now,
            components=self.dependencies.keys(),
            settings=self.settings,
        )
