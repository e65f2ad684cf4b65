"""Choose the SMD ranker's setting without the test labels: on faults we inject ourselves.

The attribution setting of :class:`ml.attribution.DeviationRanker` (its baseline window,
quantile, correlation sharing and trailing mean) was first chosen on the two machines'
``interpretation_label``, which is what we report: a selection on the reported labels.
Here it is chosen on each machine's ``train/`` rows only. The ranker is fitted on the
first 60 % of them; synthetic faults, whose culprit metrics we therefore know, are
written into the last 40 %; the setting whose ranking finds those metrics best
(HitRate@150 % per point, every row of every injected fault; HitRate@100 % breaks ties)
is the one refitted on all of ``train/`` and scored once on ``test/``.

The faults (fixed before the first run, see docs/EVALUATION.md "The setting chosen on
synthetic faults"): 5 replicas x 20 faults per machine, evenly spread with jitter, each
10-120 rows long; 1-4 metrics, half the time the first metric's most correlated mates
(|r| >= 0.5 on the fit rows), otherwise any metrics; a step or a ramp of 1-10x (log-
uniform) each metric's robust training scale, one sign per fault. Only metrics that vary
in both parts are chosen.

    params, table = select_ranker(train, seed=0)
    DeviationRanker(**params).fit(train)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluation.smd_types import RankerSetting, Segment
from ml.attribution import DeviationRanker
from ml.hygiene import robust_scale

FIT_SHARE = 0.6
REPLICAS = 5
FAULTS_PER_REPLICA = 20
DURATION = (10, 120)
GROUP_SIZE = (1, 4)
MAGNITUDE = (1.0, 10.0)  # x the metric's robust training scale, log-uniform
MATE_CORR = 0.5
WINDOWS = (60, 360, 1440)
QUANTILES = (0.5, 0.9, 0.99)
CORRS: tuple[float | None, ...] = (0.5, 0.7, 0.8, 0.9, None)  # None: no sharing
SHARES = (0.3, 0.5, 0.7)
SMOOTHS = (1, 5, 15)
GRID: dict[str, Sequence[float | None]] = {
    "window": WINDOWS,
    "quantile": QUANTILES,
    "corr": CORRS,
    "share": SHARES,
    "smooth": SMOOTHS,
}
GAP = 10
# the fewest training rows that hold the faults (each in a slot of at least 130 rows)
MIN_TRAIN_ROWS = math.ceil(FAULTS_PER_REPLICA * (DURATION[1] + 10) / (1 - FIT_SHARE))


def settings(absolute: Sequence[float] = ()) -> list[RankerSetting]:
    """Every setting of the grid, as :class:`DeviationRanker` keyword arguments; without
    sharing (``corr`` None) ``share`` is 0 and one entry stands for all shares. With
    ``absolute``, each of them once per weight of the plain |z| (evaluation/smd_cv.py)."""
    out: list[RankerSetting] = []
    for w, q, c, s, m in itertools.product(WINDOWS, QUANTILES, CORRS, SHARES, SMOOTHS):
        if c is None and s != SHARES[0]:
            continue
        setting: RankerSetting = {
            "window": w,
            "gap": GAP,
            "quantile": q,
            "corr": 1.0 if c is None else c,
            "share": 0.0 if c is None else s,
            "smooth": m,
        }
        if not absolute:
            out.append(setting)
        for weight in absolute:
            weighted = setting.copy()
            weighted["absolute"] = weight
            out.append(weighted)
    return out


def inject_faults(
    x: np.ndarray, start: int, rng: np.random.Generator, n: int = FAULTS_PER_REPLICA
) -> tuple[np.ndarray, list[Segment]]:
    """A copy of ``x`` with ``n`` faults written into rows ``start..``, and where they are.
    Correlations and scales come from the rows before ``start`` (what the ranker is fitted
    on); a fault's metrics vary in both parts."""
    x = np.array(x, dtype=np.float64, copy=True)
    fit, rest = x[:start], x[start:]
    live = np.flatnonzero((fit.std(axis=0) > 0) & (rest.std(axis=0) > 0))
    if live.size == 0:
        raise ValueError("no metric varies in both parts: nothing to inject into")
    scale = np.array([robust_scale(fit[:, j])[1] for j in range(x.shape[1])])
    corr = np.abs(np.corrcoef(fit[:, live].T)) if live.size > 1 else np.ones((1, 1))
    slot = (x.shape[0] - start) // n
    if slot < DURATION[1] + 10:
        raise ValueError(f"{x.shape[0] - start} rows cannot hold {n} faults")
    faults = []
    for k in range(n):
        length = int(rng.integers(DURATION[0], DURATION[1] + 1))
        begin = start + k * slot + int(rng.integers(0, slot - length))
        size = int(rng.integers(GROUP_SIZE[0], GROUP_SIZE[1] + 1))
        root = int(rng.integers(live.size))
        if rng.random() < 0.5:
            order = [j for j in np.argsort(-corr[root]) if j != root and corr[root, j] >= MATE_CORR]
            members = [root, *order[: size - 1]]
        else:
            members = [root]
        others = [j for j in range(live.size) if j not in members]
        fill = rng.choice(others, size=min(size - len(members), len(others)), replace=False)
        dims = tuple(sorted(int(live[j]) for j in (*members, *fill.tolist())))
        magnitude = float(np.exp(rng.uniform(*np.log(MAGNITUDE))))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        shape = np.ones(length) if rng.random() < 0.5 else np.linspace(1 / length, 1, length)
        for d in dims:
            x[begin : begin + length, d] += sign * magnitude * scale[d] * shape
        faults.append(Segment(begin, begin + length, dims))
    return x, faults


def _per_point_hit_rates(
    contrib: np.ndarray, faults: Sequence[Segment], first: int = 0
) -> tuple[float, float]:
    """Mean HitRate@150 % and @100 % over every row of every fault (vectorised
    :func:`evaluation.smd.hit_rate`); ``contrib``'s row 0 is row ``first``."""
    h150, h100 = [], []
    for f in faults:
        order = np.argsort(-contrib[f.start - first : f.end - first], axis=1, kind="stable")
        culprit = np.zeros(contrib.shape[1], dtype=bool)
        culprit[list(f.dims)] = True
        for percent, out in ((150, h150), (100, h100)):
            k = math.floor(percent / 100.0 * len(f.dims))
            out.append(culprit[order[:, :k]].sum(axis=1) / len(f.dims))
    return float(np.concatenate(h150).mean()), float(np.concatenate(h100).mean())


def select_ranker(train: np.ndarray, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The grid setting that best finds the injected faults' metrics, and every setting's
    score (best first). Uses ``train`` only."""
    train = np.asarray(train, dtype=np.float64)
    start = int(train.shape[0] * FIT_SHARE)
    fit = train[:start]
    rng = np.random.default_rng(seed)
    replicas = [inject_faults(train, start, rng) for _ in range(REPLICAS)]
    grid = settings()
    totals = np.zeros((len(grid), 2))
    for window in WINDOWS:
        # the running median is the costly part: once per window, shared by its settings;
        # a replica differs from ``fit`` only from ``start`` on, so its deviation is taken
        # from the first row whose value there depends on it (exact, ~2x less work)
        base = DeviationRanker(window=window, gap=GAP).fit_scale(fit)
        fit_dev = base.deviation(fit)
        first = max(start - window - GAP - max(SMOOTHS), 0)
        replica_dev = [base.deviation(x[first:]) for x, _ in replicas]
        for i, setting in enumerate(grid):
            if setting["window"] != window:
                continue
            ranker = DeviationRanker(**setting).fit(fit, train_deviation=fit_dev)
            for dev, (_, faults) in zip(replica_dev, replicas, strict=True):
                totals[i] += _per_point_hit_rates(ranker.blame(dev), faults, first)
    totals /= len(replicas)
    order = sorted(range(len(grid)), key=lambda i: (-totals[i, 0], -totals[i, 1], i))
    table = [
        {
            **grid[i],
            "synthetic_hitrate@150%": round(float(totals[i, 0]), 4),
            "synthetic_hitrate@100%": round(float(totals[i, 1]), 4),
        }
        for i in order
    ]
    return dict(grid[order[0]]), table
