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
)
from ml.component_rca import RcaSettings, Series

GRID = {
    "window_s": (180, 240, 300),
    "baseline_s": (600, 1800, 3600),
    "score": ("tail", "z"),
    "statistic": ("mean", "max"),
    "aggregate": ("sum", "max"),
    "split_shared": (False, True),
    "detrend": (False, True),
    # pagerank@damping; "+symptom": the walk starts at the front end's latency
    "propagation": ("none", "pagerank@0.5", "pagerank@0.85", "pagerank@0.85+symptom"),
}
SYMPTOM = (FRONTEND, "LatencyP90(s)")
GRID_VERSION = 1  # bump when the code behind a setting changes (invalidates the cache)
KINDS = ("return", "exception", "cpu_contention", "network_delay")


def settings() -> list[Setting]:
    out = []
    for w, b, score, stat, agg, split, detrend, prop in itertools.product(*GRID.values()):
        prop, _, symptom = prop.partition("+")
        name, _, damping = prop.partition("@")
        rca = RcaSettings(
            score=score,  # type: ignore[arg-type]
            statistic=stat,  # type: ignore[arg-type]
            aggregate=agg,  # type: ignore[arg-type]
            split_shared=split,
            detrend=detrend,
            propagation=name,  # type: ignore[arg-type]
            damping=float(damping) if damping else 0.85,
        )
        out.append(Setting(float(w), float(b), rca, SYMPTOM if symptom else None))
    return out


def _measured_alike(s: Setting) -> tuple[Any, ...]:
    """What the deviations depend on: settings equal here share them."""
    r = s.rca
    return (s.window_s, s.baseline_s, r.score, r.statistic, r.typical_quantile,
            r.min_baseline, r.relative_floor, r.split_shared, r.detrend)  # fmt: skip


def describe(s: Setting) -> dict[str, Any]:
    rca = asdict(s.rca)
    keep = ("score", "statistic", "aggregate", "split_shared", "detrend", "propagation", "damping")
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


def _criterion(ranks: np.ndarray) -> tuple[float, float]:
    """(AS@1 + AS@3) / 2 and the mean reciprocal rank, per setting (rows)."""
    return (
        ((ranks <= 1).mean(axis=1) + (ranks <= 3).mean(axis=1)) / 2,
        (1.0 / ranks).mean(axis=1),
    )


def choose(table: np.ndarray, train: np.ndarray) -> int:
    """The setting with the best criterion on the faults ``train`` (a boolean mask)."""
    main, mrr = _criterion(table[:, train])
    order = sorted(range(table.shape[0]), key=lambda i: (-main[i], -mrr[i], i))
    return order[0]


def cross_validate(
    table: np.ndarray, faults: Sequence[Fault], fold_of: Callable[[Fault], str]
) -> dict[str, Any]:
    """Each fold's faults ranked by the setting chosen on all the others."""
    folds = sorted({fold_of(f) for f in faults})
    ranks = np.zeros(len(faults), dtype=np.int64)
    chosen = {}
    for fold in folds:
        held = np.array([fold_of(f) == fold for f in faults])
        i = choose(table, ~held)
        ranks[held] = table[i, held]
        chosen[fold] = i
    return {"ranks": ranks, "chosen": chosen}


def _report(ranks: np.ndarray, faults: Sequence[Fault]) -> dict[str, Any]:
    return {
        "overall": accuracy(ranks.tolist()),
        "per_fault_type": {
            k: {
                **accuracy([int(r) for r, f in zip(ranks, faults, strict=True) if f.kind == k]),
                "faults": sum(f.kind == k for f in faults),
            }
            for k in KINDS
        },
    }


def _cache_path(cache_dir: Path, root: Path, days: Sequence[str], grid: Sequence[Setting]) -> Path:
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
        "propagation": lambda s: describe(s)["propagation"]
        + (f"@{s.rca.damping}" if s.rca.propagation == "pagerank" else "")
        + ("+symptom" if s.symptom else ""),
        "score": lambda s: s.rca.score,
        "split_shared": lambda s: s.rca.split_shared,
        "detrend": lambda s: s.rca.detrend,
    }
    out: dict[str, dict[str, Any]] = {}
    for knob, value_of in knobs.items():
        for value in sorted({value_of(s) for s in grid}, key=str):
            rows = [i for i, s in enumerate(grid) if value_of(s) == value]
            cv = cross_validate(table[rows], faults, lambda f: f.day)
            out.setdefault(knob, {})[str(value)] = accuracy(cv["ranks"].tolist())
    return out


def evaluate_trainticket(
    root: Path,
    days: Sequence[str] = DAYS,
    progress: Callable[[str], None] | None = None,
    grid: Sequence[Setting] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    started = time.monotonic()
    grid = list(grid or settings())
    faults = load_faults(root, days)
    if not faults:
        raise ValueError(f"no faults in the fault lists of {', '.join(days)}")
    path = _cache_path(cache_dir, root, days, grid) if cache_dir else None
    if path is not None and path.exists():
        table = np.load(path)
    else:
        table = rank_table(root, faults, grid, say)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, table)
            tmp.replace(path)
    lodo = cross_validate(table, faults, lambda f: f.day)
    lofto = cross_validate(table, faults, lambda f: f.kind)
    out: dict[str, Any] = {
        "faults": len(faults),
        "candidates": "all 46 services (the 18 idle ones included); the front end is not one",
        "window": "samples in [inject_time, inject_time + window_s] against the baseline "
        "[inject_time - baseline_s, inject_time); inject_time, never inject_timestamp",
        "topology": "caller -> callee graph derived from the traces by the dataset's curator",
        "protocol": "leave-one-day-out (quoted): the setting with the best (AS@1+AS@3)/2 on "
        "one day ranks the other day's faults; leave-one-fault-type-out beside it",
        "grid": {k: list(v) for k, v in GRID.items()},
        "settings": len(grid),
        "leave_one_day_out": {
            **_report(lodo["ranks"], faults),
            "chosen": {d: describe(grid[i]) for d, i in lodo["chosen"].items()},
        },
        "leave_one_fault_type_out": {
            **_report(lofto["ranks"], faults),
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
    if len(grid) > 1:
        best = choose(table, np.ones(len(faults), dtype=bool))
        out["chosen_on_all_faults"] = {
            **describe(grid[best]),
            "note": "the library default; it saw every label, so no reported figure uses it",
            **_report(table[best], faults)["overall"],
        }
    out["run_time_s"] = round(time.monotonic() - started, 1)
    return out


__all__ = ["FRONTEND", "evaluate_trainticket", "settings"]
