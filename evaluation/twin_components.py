"""`mendloop eval components`: the rule-free component ranking on the twin's faults.

The twin (twin/model.py) propagates each fault along the platform's dependencies
(twin/faults.yaml), so it is where blame propagation can be measured on a graph whose
effects are known. No rule is used: per scenario, the 286 series of one target (each
series' component from the catalog, hosts by role) go through
:func:`ml.component_rca.metric_deviations` (window: the ``observe_s`` seconds after the
injection; baseline: the ``warmup_s`` healthy seconds before it) and
:func:`ml.component_rca.rank_components` over knowledge/domain.yaml's topology. A
scenario is right when the injected fault's component ranks first (top-3 beside it).

Protocol: the twin evaluation's own seed split (evaluation/rca.py): the setting is the
one with the best (top-1 + top-3) / 2 on the development seeds, and is scored once on
the evaluation seeds. The 12 faults x 3 intensities x 3 times of day per seed.

    result = evaluate_components(catalog, quick=False)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.rca import DEV_SEEDS, EVAL_SEEDS, HOURS, INTENSITIES, local_time
from evaluation.trainticket import accuracy, rank_of
from ml.component_rca import (
    Aggregate,
    RcaSettings,
    Score,
    Series,
    Statistic,
    metric_deviations,
    propagation_of,
    rank_components,
    rca_grid,
)

if TYPE_CHECKING:
    from rules.catalog import Catalog

WARMUP_S = 300
OBSERVE_S = 60
SCORES: tuple[Score, ...] = ("tail", "z")
STATISTICS: tuple[Statistic, ...] = ("mean", "max")
AGGREGATES: tuple[Aggregate, ...] = ("sum", "max")
PROPAGATIONS = ("none", "pagerank@0.5", "pagerank@0.85")  # name@damping (propagation_of)
GRID = {
    "score": SCORES,
    "statistic": STATISTICS,
    "aggregate": AGGREGATES,
    "split_shared": (False, True),
    "detrend": (False, True),
    "propagation": PROPAGATIONS,
}


def settings() -> list[RcaSettings]:
    return rca_grid(
        scores=SCORES,
        statistics=STATISTICS,
        aggregates=AGGREGATES,
        splits=(False, True),
        detrends=(False, True),
        propagations=PROPAGATIONS,
    )


def scenario_series(
    catalog: Catalog, fault: str, intensity: float, hour: float, seed: int
) -> tuple[list[Series], float]:
    """One target's 286 series around one injected fault, and the injection time."""
    from twin.model import Twin

    twin = Twin(targets=("sc",), seed=seed)
    injected = local_time(hour, day=seed % 7)
    times = injected - WARMUP_S + np.arange(1, WARMUP_S + OBSERVE_S + 1, dtype=np.float64)
    rows = np.zeros((times.size, len(twin.series)))
    for i, t in enumerate(times):
        if t == injected + 1.0:  # as evaluation/rca.py: injected at the warm-up's last tick
            twin.inject("sc", fault, now=injected, intensity=intensity)
        rows[i] = twin.advance(t)[0]
    series = [
        Series(catalog[name].component, name, times, rows[:, j])
        for j, name in enumerate(twin.series)
    ]
    return series, injected


def rank_table(
    catalog: Catalog,
    seeds: Sequence[int],
    grid: Sequence[RcaSettings],
    faults: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Rank of the fault's component, per setting x scenario; and the scenarios."""
    from kernel.domain import Domain
    from twin.faults import FAULTS

    topology = {c: list(ups) for c, ups in Domain.load().components.items()}
    cases = list(itertools.product(seeds, faults, INTENSITIES, HOURS))
    table = np.zeros((len(grid), len(cases)), dtype=np.int64)
    meta = []
    for j, (seed, fault, intensity, hour) in enumerate(cases):
        series, injected = scenario_series(catalog, fault, intensity, hour, seed)
        truth = FAULTS[fault].component
        comps = {s.component for s in series} | set(topology)
        shared: dict[tuple[Any, ...], Any] = {}
        for i, cfg in enumerate(grid):
            key = (cfg.score, cfg.statistic, cfg.split_shared, cfg.detrend, cfg.merge_alike)
            if key not in shared:
                shared[key] = metric_deviations(
                    series, injected + 1.0, injected + OBSERVE_S, settings=cfg
                )
            ranked = rank_components(shared[key], topology, cfg, components=comps)
            table[i, j] = rank_of(ranked, truth)
        meta.append({"seed": seed, "fault": fault, "intensity": intensity, "hour": hour})
        if progress and (j + 1) % 27 == 0:
            progress(f"twin components: {j + 1}/{len(cases)} scenarios ranked by every setting")
    return table, meta


def _describe(cfg: RcaSettings) -> dict[str, Any]:
    keys = ("score", "statistic", "aggregate", "split_shared", "detrend", "propagation")
    out = {k: getattr(cfg, k) for k in keys}
    if cfg.propagation == "pagerank":
        out["damping"] = cfg.damping
    return out


def evaluate_components(
    catalog: Catalog, quick: bool = False, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    from evaluation.trainticket_cv import choose
    from twin.faults import FAULTS

    started = time.monotonic()
    grid = settings()
    faults = sorted(FAULTS)
    dev_seeds, eval_seeds = (DEV_SEEDS[:1], EVAL_SEEDS[:1]) if quick else (DEV_SEEDS, EVAL_SEEDS)
    dev, _ = rank_table(catalog, dev_seeds, grid, faults, progress)
    best = choose(dev, np.ones(dev.shape[1], dtype=bool))
    test, meta = rank_table(catalog, eval_seeds, grid, faults, progress)
    ranks = test[best]

    def acc(r: np.ndarray) -> dict[str, float | None]:
        a = accuracy(r.tolist())
        return {"top1": a["AS@1"], "top3": a["AS@3"], "top5": a["AS@5"]}

    ablation = {}  # the same choice on the development seeds within one propagation
    for prop in PROPAGATIONS:
        name, damping = propagation_of(prop)
        rows = [
            i
            for i, c in enumerate(grid)
            if c.propagation == name and (damping is None or c.damping == damping)
        ]
        pick = rows[choose(dev[rows], np.ones(dev.shape[1], dtype=bool))]
        ablation[prop] = {**acc(test[pick]), "setting": _describe(grid[pick])}
    return {
        "scenarios": len(meta),
        "seeds": {"development": list(dev_seeds), "evaluation": list(eval_seeds)},
        "window_s": OBSERVE_S,
        "baseline_s": WARMUP_S,
        "setting": _describe(grid[best]),
        "settings": len(grid),
        **acc(ranks),
        "per_fault": {
            f: acc(np.array([r for r, m in zip(ranks, meta, strict=True) if m["fault"] == f]))
            for f in faults
        },
        "by_propagation": ablation,
        "run_time_s": round(time.monotonic() - started, 1),
    }
