"""`mendloop bench rca` (rule-free part): one analysis of a whole site, and memory over
many targets. Figures for docs/BENCHMARKS.md, never asserted in tests.

A site of ``components`` components (a random dependency DAG, each calling up to 3
others) with ``metrics`` series each, ``samples`` samples at 10 s; in each target one
component goes wrong 5 minutes before the end and its latency-like metrics drag its
dependants along. One analysis = :func:`ml.component_rca.metric_deviations` over every
series + :func:`ml.component_rca.rank_components` over the graph, exactly what the
daemon and `mendloop rca` run. Timed per analysis, for ``targets`` targets in turn
(each analysed once, its ranking kept as a report would be); memory is read from /proc
before and after, and one analysis's own allocations with tracemalloc.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import numpy as np

from mendloop.measure import peak_rss_mb, rss_mb
from ml.component_rca import (
    ComponentScore,
    RcaSettings,
    Series,
    metric_deviations,
    rank_components,
)

T0 = 1_800_000_000.0
STEP_S = 10.0


def site(components: int, seed: int = 0) -> dict[str, list[str]]:
    """A random DAG: component i depends on up to 3 of the components after it."""
    rng = np.random.default_rng(seed)
    names = [f"svc-{i:03d}" for i in range(components)]
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        later = names[i + 1 :]
        k = min(len(later), int(rng.integers(0, 4)))
        deps[name] = [str(x) for x in rng.choice(later, size=k, replace=False)] if k else []
    return deps


def target_series(
    deps: dict[str, list[str]], metrics: int, samples: int, rng: np.random.Generator
) -> tuple[list[Series], str, float]:
    """One target's history: noise, then a fault on one component whose dependants'
    first two metrics follow it. Returns (series, culprit, incident start)."""
    names = list(deps)
    culprit = names[int(rng.integers(len(names)))]
    dependants = {culprit}
    changed = True
    while changed:  # everything that (transitively) depends on the culprit
        changed = False
        for comp, ups in deps.items():
            if comp not in dependants and dependants.intersection(ups):
                dependants.add(comp)
                changed = True
    ts = T0 + STEP_S * np.arange(samples)
    start = float(ts[-30])  # the last 5 minutes
    values = rng.normal(100.0, 5.0, size=(len(names), metrics, samples))
    for i, comp in enumerate(names):
        if comp in dependants:
            values[i, :2, -30:] += 40.0 if comp == culprit else 25.0
        if comp == culprit:
            values[i, 2:4, -30:] += 40.0  # its own resources too
    series = [
        Series(comp, f"metric_{m:02d}", ts, values[i, m])
        for i, comp in enumerate(names)
        for m in range(metrics)
    ]
    return series, culprit, start


def analyse(series: list[Series], deps: dict[str, list[str]], start: float) -> list[ComponentScore]:
    cfg = RcaSettings()
    return rank_components(metric_deviations(series, start, settings=cfg), deps, cfg)


def bench_rule_free(
    components: int = 50,
    metrics: int = 20,
    samples: int = 360,
    targets: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    deps = site(components, seed)
    rng = np.random.default_rng(seed + 1)
    series, culprit, start = target_series(deps, metrics, samples, rng)
    analyse(series, deps, start)  # warm-up (imports, first allocations)
    tracemalloc.start()
    analyse(series, deps, start)
    _, working_set = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_before = rss_mb()
    times: list[float] = []
    reports: list[list[ComponentScore]] = []
    right = 0
    for _ in range(targets):
        series, culprit, start = target_series(deps, metrics, samples, rng)
        t0 = time.perf_counter()
        ranked = analyse(series, deps, start)
        times.append((time.perf_counter() - t0) * 1000)
        right += ranked[0].component == culprit
        reports.append(ranked[:5])  # what a report keeps
    rss_after = rss_mb()
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 1),
        "p95_ms": round(float(np.percentile(times, 95)), 1),
        "max_ms": round(max(times), 1),
        "components": components,
        "metrics": components * metrics,
        "samples_per_series": samples,
        "targets": targets,
        "analysis_working_set_mb": round(working_set / 2**20, 1),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "synthetic_top1": round(right / targets, 3),
    }
