"""Rule-free root-cause ranking of components: metric deviations + the dependency graph.

When metrics go wrong and no rule names a fault, which component is the likely cause?
Two steps, both pure functions (no I/O, no clock):

1. :func:`metric_deviations` — each series (component, metric) is compared with its own
   recent past (the baseline): the window's values against the baseline's median, in
   units of its robust scale, scored as how rare each window sample is among the
   baseline's (``score="tail"``), as |z| over how far the baseline usually strays
   (``"z"``), or as how rare the *whole window* is among every window of the same
   length inside the baseline (``"history"``: a series that often has excursions, like
   the latency percentiles of a nearly idle service, is not abnormal for one more).
   Evidence given twice counts once (:mod:`ml.rca_sharing`): a series several
   components report identically is split between them, and series of one component
   that move together can share one score (``merge_alike``).
2. :func:`rank_components` — a component's own anomaly is the sum (or the largest) of
   its metrics' scores; then blame moves along the dependencies (``dependencies[c]`` =
   the components c calls or needs; :mod:`ml.rca_walk`): ``"pagerank"``, a walk from
   the abnormal components towards the dependencies that are more anomalous
   (MicroRCA / CloudRanger; only an abnormal component receives blame); ``"callers"``,
   each caller's abnormal latency / errors (``symptoms``) shared among what it calls,
   added to their own anomaly (a fault that shows in its callers more than in itself);
   ``"none"`` ranks by own anomaly.

    devs = metric_deviations(series, start=t_incident)        # [MetricDeviation]
    ranked = rank_components(devs, {"api": ["db", "cache"], "db": []})
    ranked[0].component, ranked[0].confidence, ranked[0].evidence[0]

The defaults are the setting chosen on the development protocol (docs/EVALUATION.md
"Rule-free component RCA"). Everything here is deterministic; ties keep the order of
the component names.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeGuard, get_args

import numpy as np

from ml.rca_sharing import merge_alike, split_shared
from ml.rca_types import MetricDeviation, Series
from ml.rca_walk import caller_evidence, pagerank

Propagation = Literal["none", "pagerank", "callers"]
Statistic = Literal["max", "mean"]
Score = Literal["z", "tail", "history"]
Aggregate = Literal["max", "sum"]


def propagation_of(spec: str) -> tuple[Propagation, float | None]:
    """A grid's propagation written ``name`` or ``name@knob`` (pagerank: the damping;
    callers: the callers' weight) as typed values; ValueError for an unknown name."""
    name, _, knob = spec.partition("@")
    if not _is_propagation(name):
        raise ValueError(f"unknown propagation {name!r} (one of {get_args(Propagation)})")
    return name, float(knob) if knob else None


def _is_propagation(name: str) -> TypeGuard[Propagation]:
    return name in get_args(Propagation)


# metrics whose deviation a caller shows when something it calls breaks (propagation
# "callers"); matched against the metric name, case-insensitive
SYMPTOMS = r"latency|duration|response|error|fail|timeout"


@dataclass(frozen=True)
class RcaSettings:
    """How deviations are measured and blame propagates (see the module docstring)."""

    # per window sample: |z| / typical, or -log of its tail share among the baseline
    # samples; "history": the window's mean log1p|z| against every window of the same
    # length inside the baseline, -log of its tail share among them
    score: Score = "tail"
    statistic: Statistic = "mean"  # of the samples' scores over the window
    aggregate: Aggregate = "sum"  # of the metrics' scores, a component's anomaly
    abnormal_only: bool = False  # only abnormal series count (no noise summed up)
    typical_quantile: float | None = 0.9  # z: None = |z| as is
    min_baseline: int = 5  # fewer finite baseline samples: the series gives no evidence
    relative_floor: float = 0.01  # the scale is at least this share of the baseline level
    split_shared: bool = True  # a series identical in k components counts 1/k in each
    # series of one component that move together (|correlation| >= this over baseline
    # and window, e.g. a CPU counter and the same counter in percent) count as one piece
    # of evidence: each 1/k of its score. None: every series counts fully
    merge_alike: float | None = None
    detrend: bool = False  # compare with the baseline's straight-line trend, not its level
    propagation: Propagation = "pagerank"
    damping: float = 0.85  # pagerank: share of steps that follow an edge
    back_weight: float = 0.1  # pagerank: weight of the step back to a dependant
    caller_weight: float = 1.0  # callers: weight of the callers' symptoms
    symptoms: str = SYMPTOMS  # callers: which metrics are symptoms (a regex)
    abnormal_z: float = 3.0  # z: a sample beyond this many typical deviations is abnormal
    abnormal_share: float = 0.05  # tail: rarer than this, or beyond every baseline sample
    evidence: int = 5  # metrics kept as evidence per component

    def __post_init__(self) -> None:
        if self.typical_quantile is not None and not 0 < self.typical_quantile < 1:
            raise ValueError("typical_quantile must be in (0, 1) or None")
        if not 0 <= self.damping < 1:
            raise ValueError("damping must be in [0, 1)")
        if self.min_baseline < 2:
            raise ValueError("min_baseline must be >= 2")
        if self.merge_alike is not None and not 0 < self.merge_alike <= 1:
            raise ValueError("merge_alike must be in (0, 1] or None")
        if self.caller_weight < 0:
            raise ValueError("caller_weight must be >= 0")
        re.compile(self.symptoms)


@dataclass(frozen=True)
class ComponentScore:
    component: str
    score: float  # after propagation; the ranking key
    anomaly: float  # own anomaly, log1p of the largest metric score
    confidence: float  # share of all components' scores (0..1)
    onset: float | None
    anomalous: bool  # some metric was abnormal over the window
    evidence: tuple[MetricDeviation, ...] = field(default_factory=tuple)


def rca_grid(
    *,
    scores: Sequence[Score] = ("tail",),
    statistics: Sequence[Statistic] = ("mean",),
    aggregates: Sequence[Aggregate] = ("sum",),
    abnormal_only: Sequence[bool] = (False,),
    merges: Sequence[float | None] = (None,),
    splits: Sequence[bool] = (True,),
    detrends: Sequence[bool] = (False,),
    propagations: Sequence[str] = ("pagerank",),
) -> list[RcaSettings]:
    """Every combination of the given values (the others at their defaults; ``merges``:
    ``merge_alike``, ``splits``: ``split_shared``, ``detrends``: ``detrend``), in this
    argument order, the last varying fastest; a propagation is written ``name@knob``
    (:func:`propagation_of`). The evaluations' grids (evaluation/twin_components.py,
    evaluation/trainticket_cv.py)."""
    out = []
    for score, statistic, aggregate in itertools.product(scores, statistics, aggregates):
        for only, alike, split, trend in itertools.product(abnormal_only, merges, splits, detrends):
            for spec in propagations:
                name, knob = propagation_of(spec)
                out.append(
                    RcaSettings(
                        score=score,
                        statistic=statistic,
                        aggregate=aggregate,
                        abnormal_only=only,
                        merge_alike=alike,
                        split_shared=split,
                        detrend=trend,
                        propagation=name,
                        damping=knob if name == "pagerank" and knob is not None else 0.85,
                        caller_weight=knob if name == "callers" and knob is not None else 1.0,
                    )
                )
    return out


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Row medians ignoring NaN (every row has a finite value); np.nanmedian is ~10x
    slower on short rows."""
    s = np.sort(a, axis=1)  # NaN sorts last
    n = np.isfinite(a).sum(axis=1)
    r = np.arange(a.shape[0])
    return (s[r, (n - 1) // 2] + s[r, n // 2]) / 2


def _group(
    ts: np.ndarray, values: np.ndarray, start: float, end: float, since: float, cfg: RcaSettings
) -> list[tuple[int, float, float, float, float, float | None]]:
    """Deviations of series that share their timestamps (``values``: series x samples),
    vectorised: (row, score, z at the peak, baseline median, value at the peak, onset)
    of every row with enough baseline and a window sample."""
    finite = np.isfinite(values) & np.isfinite(ts)[None, :]
    in_base = (ts < start) & (ts >= since)
    in_win = (ts >= start) & (ts <= end)
    base = np.where(finite, values, np.nan)[:, in_base]
    win = np.where(finite, values, np.nan)[:, in_win]
    base_ts, win_ts = ts[in_base], ts[in_win]
    nb = np.isfinite(base).sum(axis=1)
    rows = np.flatnonzero((nb >= cfg.min_baseline) & np.isfinite(win).any(axis=1))
    if rows.size == 0:
        return []
    base, win, nb = base[rows], win[rows], nb[rows]
    raw_med, raw_win = _nanmedian(base), win
    if cfg.detrend:  # a steadily growing metric (memory) is not anomalous for growing
        x = np.where(np.isfinite(base), base_ts[None, :] - start, np.nan)
        xm, ym = np.nanmean(x, axis=1), np.nanmean(base, axis=1)
        sxx = np.nansum((x - xm[:, None]) ** 2, axis=1)
        sxy = np.nansum((x - xm[:, None]) * (base - ym[:, None]), axis=1)
        slope = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
        icpt = np.where(sxx > 0, ym - slope * xm, 0.0)
        base = base - (icpt[:, None] + slope[:, None] * (base_ts[None, :] - start))
        win = win - (icpt[:, None] + slope[:, None] * (win_ts[None, :] - start))
    med = _nanmedian(base)
    mad = 1.4826 * _nanmedian(np.abs(base - med[:, None]))
    scale = np.where(mad > 0, mad, np.nanstd(base, axis=1))
    level = np.nanmean(np.abs(base), axis=1)
    scale = np.maximum(np.maximum(scale, cfg.relative_floor * level), 1e-9)
    z = (win - med[:, None]) / scale[:, None]
    spread = np.abs(base - med[:, None]) / scale[:, None]
    if cfg.score == "tail":
        # two-sided empirical tail share among the baseline samples, (count + 1) / (n + 1):
        # bounded by log(n + 1), blind to how far beyond the baseline's range a value is
        beyond = (spread[:, None, :] >= np.abs(z)[:, :, None]).sum(axis=2)
        dev = -np.log((beyond + 1) / (nb[:, None] + 1))
        limit = np.minimum(-math.log(cfg.abnormal_share), np.log(nb + 1)) - 1e-9
    else:
        typical = np.ones(rows.size)
        if cfg.typical_quantile is not None:
            typical = np.maximum(np.nanquantile(spread, cfg.typical_quantile, axis=1), 1.0)
        dev = np.abs(z) / typical[:, None]
        limit = np.full(rows.size, cfg.abnormal_z)
    dev = np.where(np.isfinite(win), dev, np.nan)
    score = np.nanmax(dev, axis=1) if cfg.statistic == "max" else np.nanmean(dev, axis=1)
    first = np.where(dev >= limit[:, None], win_ts[None, :], np.inf).min(axis=1)
    if cfg.score == "history":
        score, limit = _history(spread, np.abs(z), cfg)
        first = np.where(np.isfinite(first), first, win_ts[0])  # abnormal as a whole
    peak = np.nanargmax(np.where(np.isfinite(z), np.abs(z), -1.0), axis=1)
    out = []
    for i, row in enumerate(rows):
        onset = float(first[i]) if score[i] >= limit[i] else None  # the window is abnormal
        p = peak[i]
        at_peak = (float(z[i, p]), float(raw_med[i]), float(raw_win[i, p]))
        out.append((int(row), float(score[i]), *at_peak, onset))
    return out


def _window_stat(x: np.ndarray, n: int, statistic: Statistic) -> np.ndarray:
    """Per row, the mean (or max) of every run of ``n`` consecutive columns, NaN
    ignored (NaN where a run has no finite value): (rows, columns - n + 1)."""
    if x.shape[1] < n:
        return np.full((x.shape[0], 0), np.nan)
    runs = np.lib.stride_tricks.sliding_window_view(x, n, axis=1)
    finite = np.isfinite(runs)
    count = finite.sum(axis=2)
    if statistic == "max":
        out = np.where(finite, runs, -np.inf).max(axis=2)
    else:
        out = np.where(finite, runs, 0.0).sum(axis=2) / np.maximum(count, 1)
    return np.where(count > 0, out, np.nan)


def _history(
    spread: np.ndarray, win_abs_z: np.ndarray, cfg: RcaSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Score ``history``: how rare the window's mean (or max) log1p|z| is among every
    window of the same length inside the baseline (-log of its tail share, (count + 1)
    / (n + 1)), and the limit beyond which it is abnormal. A series that often has
    excursions like this one (latency percentiles of a nearly idle service) is not
    abnormal for having one more."""
    n = win_abs_z.shape[1]
    now = _window_stat(np.log1p(win_abs_z), n, cfg.statistic)[:, 0]
    past = _window_stat(np.log1p(spread), n, cfg.statistic)
    count = np.isfinite(past).sum(axis=1)
    beyond = (past >= now[:, None] - 1e-12).sum(axis=1)
    score = np.where(count > 0, -np.log((beyond + 1) / (count + 1)), 0.0)
    limit = np.minimum(-math.log(cfg.abnormal_share), np.log(count + 1)) - 1e-9
    return score, np.where(count > 0, limit, np.inf)


def metric_deviations(
    series: Iterable[Series],
    start: float,
    end: float = math.inf,
    baseline_s: float = math.inf,
    settings: RcaSettings | None = None,
) -> list[MetricDeviation]:
    """Every series' deviation in the window ``[start, end]`` against its baseline
    ``[start - baseline_s, start)``. A series with too few baseline samples or none in
    the window gives no evidence (it is left out)."""
    cfg = settings or RcaSettings()
    since = start - baseline_s
    by_clock: dict[bytes, list[Series]] = {}  # series sampled at the same times go together
    for s in series:
        ts = np.asarray(s.ts, dtype=np.float64)
        by_clock.setdefault(ts.tobytes(), []).append(s)
    out = []
    for group in by_clock.values():
        ts = np.asarray(group[0].ts, dtype=np.float64)
        values = np.array([np.asarray(s.values, dtype=np.float64) for s in group])
        if values.shape != (len(group), ts.size):
            raise ValueError("a series has a different number of timestamps and values")
        for row, *measured in _group(ts, values, start, end, since, cfg):
            s = group[row]
            out.append((s, MetricDeviation(s.component, s.metric, *measured)))
    if cfg.split_shared:
        out = split_shared(out, since, end)
    if cfg.merge_alike is not None:
        out = merge_alike(out, since, end, cfg.merge_alike)
    return [d for _, d in out]


def _anomaly(devs: Sequence[MetricDeviation], cfg: RcaSettings) -> float:
    """A component's own anomaly from its metrics' scores (log-scaled for ``z``)."""
    scores = [
        d.score if cfg.score != "z" else math.log1p(d.score)
        for d in devs
        if d.abnormal or not cfg.abnormal_only
    ]
    if not scores:
        return 0.0
    return float(sum(scores) if cfg.aggregate == "sum" else max(scores))


def _symptom(devs: Sequence[MetricDeviation], pattern: re.Pattern[str], cfg: RcaSettings) -> float:
    """A component's symptom: the largest score of its abnormal symptom metrics."""
    scores = [
        d.score if cfg.score != "z" else math.log1p(d.score)
        for d in devs
        if d.abnormal and pattern.search(d.metric)
    ]
    return max(scores, default=0.0)


def rank_components(
    deviations: Iterable[MetricDeviation],
    dependencies: Mapping[str, Sequence[str]] | None = None,
    settings: RcaSettings | None = None,
    symptom: tuple[str, str] | None = None,
    components: Iterable[str] = (),
) -> list[ComponentScore]:
    """Components ranked by blame, most likely cause first. ``dependencies``: component
    -> the components it calls or needs (blame flows that way); ``symptom``: (component,
    metric) the walk starts from; ``components``: candidates besides those named by
    the deviations and the graph."""
    cfg = settings or RcaSettings()
    deps = {c: tuple(d) for c, d in (dependencies or {}).items()}
    by_comp: dict[str, list[MetricDeviation]] = {}
    for d in deviations:
        by_comp.setdefault(d.component, []).append(d)
    names = sorted(
        set(components) | set(by_comp) | set(deps) | {d for ds in deps.values() for d in ds}
    )
    if not names:
        return []
    if symptom is not None and symptom[0] not in names:
        raise ValueError(f"symptom component {symptom[0]!r} is not among the components")
    anomaly = np.array([_anomaly(by_comp.get(c, ()), cfg) for c in names])
    abnormal = np.array([any(d.abnormal for d in by_comp.get(c, ())) for c in names])
    if cfg.propagation == "pagerank":
        blame = anomaly * abnormal  # only an abnormal component can be a cause
        start = blame.copy()
        if symptom is not None:
            start = np.zeros(len(names))
            start[names.index(symptom[0])] = 1.0
        score = blame
        if blame.any():
            walk = pagerank(names, blame, deps, start, cfg.damping, cfg.back_weight)
            score = walk * abnormal
    elif cfg.propagation == "callers":
        pattern = re.compile(cfg.symptoms, re.IGNORECASE)
        symptoms = np.array([_symptom(by_comp.get(c, ()), pattern, cfg) for c in names])
        score = caller_evidence(names, anomaly, symptoms, deps, cfg.caller_weight)
    else:
        score = anomaly.copy()
    total = float(score.sum())
    order = sorted(range(len(names)), key=lambda i: (-score[i], -anomaly[i], names[i]))
    out = []
    for i in order:
        ev = sorted(by_comp.get(names[i], ()), key=lambda d: (-d.score, d.metric))
        onsets = [d.onset for d in ev if d.onset is not None]
        out.append(
            ComponentScore(
                names[i],
                float(score[i]),
                float(anomaly[i]),
                float(score[i] / total) if total > 0 else 0.0,
                min(onsets) if onsets else None,
                bool(abnormal[i]),
                tuple(ev[: cfg.evidence]),
            )
        )
    return out
