"""TrainTicket, cross-validated: the RCA setting is chosen on some faults, scored on others.

Protocols (both reported; the first is the one we quote):

- **leave-one-day-out**: the setting with the best (AS@1 + AS@3) / 2 on one day's faults
  (ties: the better mean reciprocal rank, then grid order) ranks the other day's.
  The days confound the fault types (01-29: return, exception, cpu; 01-30: cpu,
  network), so each day is scored by a setting that never saw most of its types.
- **leave-one-fault-type-out**: the same, four folds by fault type.

The grid was committed before the reporting run (docs/EVALUATION.md "Rule-free
component RCA"). Every setting's rank of the true service on every fault is computed
once; the folds only read that table.

    result = evaluate_trainticket(Path("../shared/datasets/nezha-trainticket"))
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.rank_folds import choose, cross_validate, report
from evaluation.trainticket import (
    DAYS,
    FRONTEND,
    PUBLISHED,
    Fault,
    Setting,
    accuracy,
    fault_deviations,
    load_day,
    load_faults,
    rank_fault,
    rank_of,
    topology,
)
from ml.component_rca import Aggregate, Score, Series, rca_grid

Progress = Callable[[str], None]

WINDOWS_S = (180, 240, 300)
BASELINES_S = (1800, 3600)
SCORES: tuple[Score, ...] = ("tail", "history", "z")
AGGREGATES: tuple[Aggregate, ...] = ("sum", "max")
ABNORMAL_ONLY = (False, True)
MERGE_ALIKE = (None, 0.95)
# pagerank@damping; callers@weight of the callers' symptoms (propagation_of)
PROPAGATIONS = ("none", "pagerank@0.85", "callers@1", "callers@3")
GRID = {  # round 2 (issue 17); round 1's grid is in docs/EVALUATION.md
    "window_s": WINDOWS_S,
    "baseline_s": BASELINES_S,
    "score": SCORES,
    "aggregate": AGGREGATES,
    "abnormal_only": ABNORMAL_ONLY,
    "merge_alike": MERGE_ALIKE,
    "propagation": PROPAGATIONS,
}
SYMPTOM = (FRONTEND, "LatencyP90(s)")
GRID_VERSION = 2  # bump when the code behind a setting changes (invalidates the cache)


def settings() -> list[Setting]:
    rcas = rca_grid(
        scores=SCORES,
        aggregates=AGGREGATES,
        abnormal_only=ABNORMAL_ONLY,
        merges=MERGE_ALIKE,
        propagations=PROPAGATIONS,
    )
    return [
        Setting(float(w), float(b), rca)
        for w, b, rca in itertools.product(WINDOWS_S, BASELINES_S, rcas)
    ]


def _measured_alike(s: Setting) -> tuple[Any, ...]:
    """What the deviations depend on: settings equal here share them."""
    r = s.rca
    return (s.window_s, s.baseline_s, r.score, r.statistic, r.typical_quantile,
            r.min_baseline, r.relative_floor, r.split_shared, r.detrend,
            r.merge_alike)  # fmt: skip


def describe(s: Setting) -> dict[str, Any]:
    rca = asdict(s.rca)
    keep = (
        "score", "statistic", "aggregate", "abnormal_only", "merge_alike", "split_shared",
        "detrend", "propagation", "damping", "caller_weight",
    )  # fmt: skip
    out = {"window_s": s.window_s, "baseline_s": s.baseline_s, **{k: rca[k] for k in keep}}
    out["symptom"] = ":".join(s.symptom) if s.symptom else None
    return out


def _clip(series: Sequence[Series], lo: float, hi: float) -> list[Series]:
    out = []
    for s in series:
        keep = (s.ts >= lo) & (s.ts <= hi)
        out.append(Series(s.component, s.metric, s.ts[keep], s.values[keep]))
    return out


def rank_table(
    root: Path,
    faults: Sequence[Fault],
    grid: Sequence[Setting],
    progress: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Rank of the true service, per setting x fault."""
    days = {d: load_day(root, d) for d in sorted({f.day for f in faults})}
    longest = max(s.baseline_s for s in grid)
    widest = max(s.window_s for s in grid)
    table = np.zeros((len(grid), len(faults)), dtype=np.int64)
    for j, f in enumerate(faults):
        near = _clip(days[f.day], f.at - longest, f.at + widest)
        shared: dict[tuple[Any, ...], Any] = {}
        for i, s in enumerate(grid):
            key = _measured_alike(s)
            if key not in shared:
                shared[key] = fault_deviations(near, f, s)
            table[i, j] = rank_of(rank_fault(near, f, s, shared[key]), f.service)
        if progress:
            progress(f"TrainTicket fault {j + 1}/{len(faults)} ({f.kind}) ranked by every setting")
    return table


def _cache_path(cache_dir: Path, root: Path, days: Sequence[str], grid: Sequence[Any]) -> Path:
    stamp = [GRID_VERSION, str(root.resolve()), list(days), [repr(s) for s in grid]]
    for day in days:
        for path in sorted((root / day).rglob("*")):
            if path.is_file():
                st = path.stat()
                stamp.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
    return cache_dir / f"ranks-{key}.npy"


def _ablation(
    table: np.ndarray, faults: Sequence[Fault], grid: Sequence[Setting]
) -> dict[str, dict[str, Any]]:
    """Leave-one-day-out again with one knob held at each of its values (the others still
    chosen on the other day): what each choice is worth, under the same protocol."""
    knobs: dict[str, Callable[[Setting], Any]] = {
        "propagation": lambda s: s.rca.propagation
        + (f"@{s.rca.damping}" if s.rca.propagation == "pagerank" else "")
        + (f"@{s.rca.caller_weight}" if s.rca.propagation == "callers" else "")
        + ("+symptom" if s.symptom else ""),
        "score": lambda s: s.rca.score,
        "aggregate": lambda s: s.rca.aggregate,
        "abnormal_only": lambda s: s.rca.abnormal_only,
        "merge_alike": lambda s: s.rca.merge_alike,
        "window_s": lambda s: s.window_s,
        "baseline_s": lambda s: s.baseline_s,
    }
    out: dict[str, dict[str, Any]] = {}
    for knob, value_of in knobs.items():
        for value in sorted({value_of(s) for s in grid}, key=str):
            rows = [i for i, s in enumerate(grid) if value_of(s) == value]
            cv = cross_validate(table[rows], faults, lambda f: f.day)
            out.setdefault(knob, {})[str(value)] = accuracy(cv["ranks"].tolist())
    return out


def _cached(path: Path | None, compute: Callable[[], np.ndarray]) -> np.ndarray:
    if path is not None and path.exists():
        return np.load(path)
    table = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, table)
        tmp.replace(path)
    return table


def topology_only(faults: Sequence[Fault], components: Sequence[str]) -> np.ndarray:
    """The control that looks at no metric: services ranked by how many services call
    them (ties: name), the same order for every fault."""
    callers: dict[str, int] = dict.fromkeys(components, 0)
    for deps in topology().values():
        for d in deps:
            callers[d] = callers.get(d, 0) + 1
    order = sorted(callers, key=lambda c: (-callers[c], c))
    return np.array([order.index(f.service) + 1 for f in faults])


def baselines(
    root: Path, days: Sequence[str], faults: Sequence[Fault], cache_dir: Path | None, say: Progress
) -> dict[str, Any]:
    """The metrics-free control and MicroRCA, under the same protocol as ours."""
    from evaluation.microrca import day_frame, grid, microrca_table, report_microrca, services

    frames = {d: day_frame(load_day(root, d)) for d in days}
    names = services(frames)
    path = None
    if cache_dir is not None:
        key = _cache_path(cache_dir, root, days, [repr(s) for s in grid()]).name
        path = cache_dir / key.replace("ranks-", "microrca-")
    table = _cached(path, lambda: microrca_table(frames, faults, grid(), say))
    return {
        "topology_only": {
            "method": "services ranked by their number of callers in the call graph, "
            "no metric read (what a graph alone gives)",
            **report(topology_only(faults, names), faults),
        },
        "microrca": report_microrca(table, faults, names),
    }


def evaluate_trainticket(
    root: Path,
    days: Sequence[str] = DAYS,
    progress: Callable[[str], None] | None = None,
    grid: Sequence[Setting] | None = None,
    cache_dir: Path | None = None,
    with_baselines: bool = True,
) -> dict[str, Any]:
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    started = time.monotonic()
    grid = list(grid or settings())
    faults = load_faults(root, days)
    if not faults:
        raise ValueError(f"no faults in the fault lists of {', '.join(days)}")
    path = _cache_path(cache_dir, root, days, grid) if cache_dir else None
    table = _cached(path, lambda: rank_table(root, faults, grid, say))
    lodo = cross_validate(table, faults, lambda f: f.day)
    lofto = cross_validate(table, faults, lambda f: f.kind)
    out: dict[str, Any] = {
        "faults": len(faults),
        "candidates": "all 46 services (the 18 idle ones included); the UI (ts-ui-dashboard) "
        "is one, and front_service.csv's series are its own (identical to its server latency)",
        "window": "samples in [inject_time, inject_time + window_s] against the baseline "
        "[inject_time - baseline_s, inject_time); inject_time, never inject_timestamp",
        "topology": "caller -> callee graph derived from the traces by the dataset's curator, "
        "plus ts-ui-dashboard -> ts-gateway-service (the UI is not traced)",
        "protocol": "leave-one-day-out (quoted): the setting with the best (AS@1+AS@3)/2 on "
        "one day ranks the other day's faults; leave-one-fault-type-out beside it",
        "grid": {k: list(v) for k, v in GRID.items()},
        "settings": len(grid),
        "leave_one_day_out": {
            **report(lodo["ranks"], faults),
            "chosen": {d: describe(grid[i]) for d, i in lodo["chosen"].items()},
        },
        "leave_one_fault_type_out": {
            **report(lofto["ranks"], faults),
            "chosen": {k: describe(grid[i]) for k, i in lofto["chosen"].items()},
        },
        "published": {
            name: dict(zip(("AS@1", "AS@3", "AS@5"), (v / 100 for v in vals), strict=True))
            for name, vals in PUBLISHED.items()
        },
        "per_fault": [
            {
                "day": f.day,
                "inject_time": f.at,
                "service": f.service,
                "type": f.kind,
                "rank_leave_one_day_out": int(lodo["ranks"][j]),
            }
            for j, f in enumerate(faults)
        ],
    }
    out["ablation_leave_one_day_out"] = _ablation(table, faults, grid)
    if with_baselines:
        out["baselines"] = baselines(root, days, faults, cache_dir, say)
    if len(grid) > 1:
        best = choose(table, np.ones(len(faults), dtype=bool))
        out["chosen_on_all_faults"] = {
            **describe(grid[best]),
            "note": "the library default; it saw every label, so no reported figure uses it",
            **report(table[best], faults)["overall"],
        }
    out["run_time_s"] = round(time.monotonic() - started, 1)
    return out


__all__ = ["FRONTEND", "choose", "cross_validate", "evaluate_trainticket", "settings"]
