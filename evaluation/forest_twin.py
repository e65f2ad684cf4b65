"""`mendloop eval forest`: would IsolationForests per component add to the daemon's ML?

The daemon's ML evidence is one seasonal baseline per series (loop/anomaly.py). This
measures, on the digital twin, what a :class:`ml.GroupForest` per component (all catalog
series of that component, one target) would add next to it, before anyone wires it in:

- both learn from the same fault-free simulated day (``TRAIN_SEED``, a row every 30 s,
  as the daemon samples its baseline window);
- **false alarms**: anomalous rows per component and fault-free hour (control hours;
  for the baselines: seconds x components with a series the bank calls anomalous);
- **which component first**: for every single fault, the component flagged first after
  the injection (forest: first anomalous row; baselines: the earliest onset among the
  series the bank calls anomalous) against the fault's component, and how many seconds
  after the injection;
- **cost**: one ``GroupForest.score`` call (the window the streaming path would score each
  tick) against the per-tick budget.

    result = evaluate_forest(catalog, seeds=(101, 102, 103))

Figures in docs/EVALUATION.md ("IsolationForest groups on the twin").
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.rca import CONTROL_HOURS, DAY, DEV_SEEDS, TRAIN_SEED, local_time

if TYPE_CHECKING:
    from rules.catalog import Catalog

INTENSITIES = (0.8, 1.0, 1.3)
HOURS = (4.0, 10.0, 20.0)
CONTROL_S = 3600


def _run(
    twin_seed: int, hour: float, seconds: int, fault: str | None, intensity: float, warm: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Rows (time, series) of one twin target: ``warm`` healthy seconds, then the fault."""
    from twin.model import Twin

    twin = Twin(targets=("x",), seed=twin_seed)
    t = local_time(hour, day=twin_seed % 7) - warm
    ts, rows = [], []
    for k in range(warm + seconds):
        if fault is not None and k == warm:
            twin.inject("x", fault, now=t, intensity=intensity)
        t += 1.0
        rows.append(twin.advance(t)[0].copy())  # advance reuses its buffer
        ts.append(t)
    return np.array(ts), np.array(rows), tuple(twin.series)


def evaluate_forest(
    catalog: Catalog,
    seeds: Sequence[int] = DEV_SEEDS,
    quick: bool = False,
    observe_s: int = 90,
    warm_s: int = 60,
) -> dict[str, Any]:
    """The JSON object of `mendloop eval forest` (``quick``: intensity 1 at 10:00 only,
    10 control minutes per seed)."""
    from loop.anomaly import BaselineBank
    from ml import GroupForest
    from twin.faults import FAULTS
    from twin.model import Twin

    started = time.perf_counter()
    bank = BaselineBank(catalog)
    twin = Twin(targets=("baseline",), seed=TRAIN_SEED)
    series = tuple(twin.series)
    order = np.array([bank.index[s] for s in series])
    start = local_time(0.0) - 30 * DAY
    train_ts = start + np.arange(0.0, DAY, bank.policy.stride_s)
    train = np.array([twin.advance(float(t))[0].copy() for t in train_ts])
    groups: dict[str, list[int]] = defaultdict(list)
    for j, name in enumerate(series):
        groups[catalog[name].component].append(j)
    t0 = time.perf_counter()
    forests = {
        comp: GroupForest(
            [series[j] for j in idx], window=1, false_alarm_rate=bank.policy.false_alarm_rate
        ).fit(train[:, idx])
        for comp, idx in groups.items()
    }
    fit_s = time.perf_counter() - t0
    rows = np.full((train_ts.size, len(bank.series)), np.nan)
    rows[:, order] = train
    baseline, _ = bank.fit("baseline", train_ts, rows, now=float(train_ts[-1]))

    probe = train[:6]
    t0 = time.perf_counter()
    for _ in range(20):
        for comp, idx in groups.items():
            forests[comp].score(probe[:, idx])
    call_ms = (time.perf_counter() - t0) * 1000 / (20 * len(groups))

    false_rows: dict[str, int] = defaultdict(int)
    base_false = 0  # (second, component) pairs with a baseline anomaly, fault-free
    hours = 0.0
    control_s = 600 if quick else CONTROL_S
    for seed in seeds:
        for hour in CONTROL_HOURS[:1] if quick else CONTROL_HOURS:
            ts, x, _ = _run(seed, hour, control_s, None, 1.0, 0)
            for comp, idx in groups.items():
                false_rows[comp] += int(forests[comp].score(x[:, idx]).anomalous.sum())
            bank.install("control", baseline)
            for k in range(ts.size):  # the same rows through the daemon's baselines
                bank.update("control", order, np.full(order.size, ts[k]), x[k], healthy=False)
                base_false += len({e.component for e in bank.anomalies("control")})
            bank.forget("control")
            hours += control_s / 3600
    runs = []
    n = 0
    for fault in sorted(FAULTS):
        for intensity in (1.0,) if quick else INTENSITIES:
            for hour in (10.0,) if quick else HOURS:
                seed = seeds[n % len(seeds)]
                n += 1
                ts, x, _ = _run(seed, hour, observe_s, fault, intensity, warm_s)
                injected = ts[warm_s] - 1.0
                forest_first: tuple[float, str] | None = None
                for comp, idx in groups.items():
                    hit = np.flatnonzero(forests[comp].score(x[:, idx]).anomalous[warm_s:])
                    if hit.size and (forest_first is None or ts[warm_s + hit[0]] < forest_first[0]):
                        forest_first = (float(ts[warm_s + hit[0]]), comp)
                target = f"sc-{n}"
                bank.install(target, baseline)
                base_first: tuple[float, str] | None = None
                for k in range(ts.size):
                    bank.update(target, order, np.full(order.size, ts[k]), x[k], healthy=False)
                    found = [e for e in bank.anomalies(target) if e.since >= injected]
                    if k >= warm_s and found and base_first is None:
                        first = min(found, key=lambda e: e.since)
                        base_first = (first.since, first.component or "")
                bank.forget(target)
                runs.append(
                    {
                        "scenario": f"{fault}@{intensity:g}/{hour:g}h",
                        "component": FAULTS[fault].component,
                        "forest_first": forest_first and forest_first[1],
                        "forest_after_s": forest_first and round(forest_first[0] - injected, 1),
                        "baseline_first": base_first and base_first[1],
                        "baseline_after_s": base_first and round(base_first[0] - injected, 1),
                    }
                )
    total = max(1, len(runs))
    return {
        "components": {c: len(i) for c, i in groups.items()},
        "fit_s": round(fit_s, 2),
        "score_call_ms": round(call_ms, 2),
        "score_ms_per_tick_10_targets": round(call_ms * len(groups) * 10, 1),
        "control_hours": hours,
        "forest_false_rows_per_component_hour": {
            c: round(v / hours, 2) for c, v in sorted(false_rows.items())
        },
        "forest_false_rows_per_hour": round(sum(false_rows.values()) / hours, 1),
        "baseline_false_rows_per_hour": round(base_false / hours, 1),
        "scenarios": len(runs),
        "forest_first_right": round(
            sum(r["forest_first"] == r["component"] for r in runs) / total, 4
        ),
        "baseline_first_right": round(
            sum(r["baseline_first"] == r["component"] for r in runs) / total, 4
        ),
        "forest_after_s_p50": _median([r["forest_after_s"] for r in runs]),
        "baseline_after_s_p50": _median([r["baseline_after_s"] for r in runs]),
        "wrong": [
            r
            for r in runs
            if r["forest_first"] != r["component"] or r["baseline_first"] != r["component"]
        ],
        "seeds": list(seeds),
        "train_seed": TRAIN_SEED,
        "run_time_s": round(time.perf_counter() - started, 1),
    }


def _median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(float(np.median(found)), 2) if found else None
