"""ML evidence for the RCA: per-target seasonal baselines learnt from normal operation.

    bank = BaselineBank(catalog, model_dir=settings.var_dir / "models")
    bank.load()                                   # models persisted by an earlier run
    bank.update(target, idx, ts, values, healthy) # each tick (the analyzer does this)
    bank.anomalies(target)                        # [Evidence(source="anomaly"), ...]
    for target in bank.due(now): bank.retrain(target, now)    # on schedule, off the loop

Every catalog series of a target gets a :class:`ml.SeasonalBaseline` (median/MAD per hour
of the day) fitted on a *baseline window* of that target's own normal operation: rows are
sampled every ``stride_s`` while no catalog threshold of the target is breached, kept for
``window_s``, and the model is refitted every ``every_s`` (``ml.RetrainSchedule``) and
persisted with ``ml.save_model``. Nothing in this path is a constant in data units:

- a point is beyond its baseline when its robust z-score exceeds the series' learnt
  threshold (the ``1 - false_alarm_rate`` quantile of its training z-scores);
- it is an *anomaly* once that has lasted the catalog ``duration_s`` of the series (the
  persistence the rules demand too), so one noisy point is never evidence;
- its onset is the start of the excursion: the first point of the unbroken run above the
  series' usual deviation (``ml.elevated_level`` at the 0.9 quantile of its training z:
  with the median, noise alone starts a run every other point), as in ``ml.onset_index``;
- an hour of the day that had too few training rows is not judged at all;
- bad input is never an anomaly: a series silent for ``gap_s`` (while its target still
  reports) or frozen at one value for longer than it ever stayed put in training
  (``SeasonalBaseline.stale_after``) drops out of the evidence.

Anomalies never open an incident: they are evidence that the RCA weighs (onset order,
which components are abnormal), next to the rules that do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kernel.models import Evidence
from loop.baseline_streams import BaselineStreams
from rules.catalog import Catalog

if TYPE_CHECKING:  # ml/ pulls in scikit-learn: imported where a model is fitted or read
    from ml import ModelMeta

log = logging.getLogger("mendloop.analyze.ml")


@dataclass(frozen=True)
class BaselinePolicy:
    """How baselines are learnt: from ``window_s`` of normal operation sampled every
    ``stride_s``, first after ``min_span_s`` of it, then refitted every ``every_s``."""

    window_s: float = 86_400.0
    stride_s: float = 30.0
    every_s: float = 3_600.0
    min_span_s: float = 3_600.0
    bucket_s: float = 3_600.0
    period_s: float = 86_400.0
    false_alarm_rate: float = 0.001
    min_bucket: int = 10
    # an excursion starts where the score leaves the usual band: above this quantile of
    # the series' own training scores (the median would start one on every other point)
    onset_quantile: float = 0.9


@dataclass
class TargetBaseline:
    """One target's fitted baselines stacked as arrays ([series] or [series, bucket])."""

    series: tuple[str, ...]
    period_s: float
    bucket_s: float
    median: np.ndarray
    scale: np.ndarray
    judged: np.ndarray  # [series, bucket]: enough training rows in this hour to judge it
    threshold: np.ndarray
    elevated: np.ndarray
    stale_after: np.ndarray  # [series]: longer flat than this (points) is a frozen source
    trained_from: float
    trained_to: float

    def buckets(self, ts: np.ndarray) -> np.ndarray:
        return ((ts % self.period_s) // self.bucket_s).astype(int)


def fit_baseline(
    series: tuple[str, ...], ts: np.ndarray, rows: np.ndarray, policy: BaselinePolicy
) -> TargetBaseline:
    """Fit every series of ``rows`` ([time, series], NaN allowed) with SeasonalBaseline."""
    from ml import SeasonalBaseline, elevated_level

    n_buckets = max(1, int(np.ceil(policy.period_s / policy.bucket_s)))
    shape = (len(series), n_buckets)
    median, scale = np.zeros(shape), np.ones(shape)
    judged = np.zeros(shape, dtype=bool)
    threshold = np.full(len(series), np.inf)
    elevated = np.full(len(series), np.inf)
    stale_after = np.full(len(series), np.inf)
    for j in range(len(series)):
        values = rows[:, j]
        ok = np.isfinite(values)
        if ok.sum() < 2:
            continue  # never seen: never judged
        base = SeasonalBaseline(
            period_s=policy.period_s,
            bucket_s=policy.bucket_s,
            false_alarm_rate=policy.false_alarm_rate,
            min_bucket=policy.min_bucket,
        ).fit(ts, values)
        median[j], scale[j], threshold[j] = base.median, base.scale, base.threshold
        stale_after[j] = base.stale_after
        counts = np.bincount(base._bucket(ts[ok]), minlength=n_buckets)[:n_buckets]
        judged[j] = counts >= policy.min_bucket
        z = base.score_many(ts[ok], values[ok]).scores
        if np.isfinite(z).any():
            elevated[j] = elevated_level(z, policy.onset_quantile)
    return TargetBaseline(
        series=series,
        period_s=policy.period_s,
        bucket_s=policy.bucket_s,
        median=median,
        scale=scale,
        judged=judged,
        threshold=threshold,
        elevated=elevated,
        stale_after=stale_after,
        trained_from=float(np.nanmin(ts)),
        trained_to=float(np.nanmax(ts)),
    )


@dataclass
class _TargetState:
    """A target's row of the bank's streams (loop/baseline_streams.py) and what is its own:
    the baseline window and the model."""

    streams: BaselineStreams
    row: int
    rows: list[np.ndarray] = field(default_factory=list)  # the baseline window
    row_ts: list[float] = field(default_factory=list)
    model: TargetBaseline | None = None
    meta: ModelMeta | None = None

    # views of its row (taken afresh: the streams' matrices grow)
    value = property(lambda self: self.streams.value[self.row])
    ts = property(lambda self: self.streams.ts[self.row])
    z = property(lambda self: self.streams.z[self.row])
    expected = property(lambda self: self.streams.expected[self.row])
    beyond_since = property(lambda self: self.streams.beyond_since[self.row])
    onset = property(lambda self: self.streams.onset[self.row])
    run = property(lambda self: self.streams.run[self.row])


def _file_name(target: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", target) + ".joblib"


class BaselineBank:
    """Baselines of every target, their streaming state and their training windows.
    Not thread-safe on its own: the analyzer calls it under its lock (``retrain`` fits
    outside it and swaps the model in)."""

    def __init__(
        self,
        catalog: Catalog,
        model_dir: Path | None = None,
        policy: BaselinePolicy | None = None,
        gap_s: float = 60.0,
    ) -> None:
        self.catalog = catalog
        self.gap_s = gap_s
        self.model_dir = model_dir
        self.policy = policy or BaselinePolicy()
        self.series = tuple(catalog)
        self.index = {name: i for i, name in enumerate(self.series)}
        self.duration = np.array([catalog[s].duration_s for s in self.series])
        self.components = tuple(catalog[s].component for s in self.series)
        self._targets: dict[str, _TargetState] = {}
        self.streams = BaselineStreams(len(self.series))

    def _state(self, target: str) -> _TargetState:
        state = self._targets.get(target)
        if state is None:
            state = self._targets[target] = _TargetState(self.streams, self.streams.add())
        return state

    # -- models ------------------------------------------------------------------------

    def install(self, target: str, model: TargetBaseline, meta: ModelMeta | None = None) -> None:
        """Use ``model`` for ``target`` from now on (a fitted or loaded baseline)."""
        if model.series != self.series:
            raise ValueError("baseline was fitted on another catalog; retrain it")
        state = self._state(target)
        state.model, state.meta = model, meta
        self.streams.install(state.row, model)

    def model(self, target: str) -> TargetBaseline | None:
        state = self._targets.get(target)
        return state.model if state else None

    def load(self) -> int:
        """Models persisted under ``model_dir``; a file that cannot be used is logged and
        skipped (the target retrains). Returns how many were loaded."""
        if self.model_dir is None or not self.model_dir.is_dir():
            return 0
        from ml import ModelFileError, load_model

        loaded = 0
        for path in sorted(self.model_dir.glob("*.joblib")):
            try:
                model, meta = load_model(path, kind="TargetBaseline")
                self.install(meta.key, model, meta)
                loaded += 1
            except (ModelFileError, ValueError) as exc:
                log.warning("baseline %s not used: %s", path, exc)
        return loaded

    def due(self, now: float) -> list[str]:
        """Targets whose baseline window is long enough and whose model is missing or old."""
        out = []
        for target, state in self._targets.items():
            if not state.row_ts or state.row_ts[-1] - state.row_ts[0] < self.policy.min_span_s:
                continue
            from ml import RetrainSchedule

            if RetrainSchedule(self.policy.every_s, self.policy.window_s).due(state.meta, now):
                out.append(target)
        return out

    def training_window(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        state = self._state(target)
        return np.array(state.row_ts), np.array(state.rows).reshape(-1, len(self.series))

    def fit(
        self, target: str, ts: np.ndarray, rows: np.ndarray, now: float
    ) -> tuple[TargetBaseline, ModelMeta]:
        """Fit a baseline on a training window and persist it (when ``model_dir`` is set);
        pure apart from the file, so it may run outside the analyzer's lock."""
        from ml import FORMAT_VERSION, ModelMeta, save_model

        model = fit_baseline(self.series, ts, rows, self.policy)
        if self.model_dir is not None:
            meta = save_model(
                model,
                self.model_dir / _file_name(target),
                key=target,
                trained_from=model.trained_from,
                trained_to=model.trained_to,
                now=now,
            )
        else:
            meta = ModelMeta(
                "TargetBaseline", target, FORMAT_VERSION, model.trained_from, model.trained_to, now
            )
        return model, meta

    def retrain(self, target: str, now: float) -> TargetBaseline | None:
        """Fit on the target's own baseline window and use the result from now on."""
        ts, rows = self.training_window(target)
        if ts.size < 2:
            return None
        model, meta = self.fit(target, ts, rows, now)
        self.install(target, model, meta)
        return model

    # -- streaming -----------------------------------------------------------------------

    def update(
        self, target: str, idx: np.ndarray, ts: np.ndarray, values: np.ndarray, healthy: bool
    ) -> None:
        """Score the newest points of ``target`` (``idx`` into ``self.series``) and keep a
        baseline row every ``stride_s`` while the target is ``healthy``."""
        group = np.zeros(len(idx), dtype=np.int64)
        self.update_many([target], group, idx, ts, values, [healthy])

    def update_many(
        self,
        targets: list[str],
        group: np.ndarray,
        idx: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        healthy: list[bool],
    ) -> None:
        """``update`` for the newest points of several targets at once (point ``k`` is of
        ``targets[group[k]]``): one array op over every target's series, then each healthy
        target's baseline row when one is due."""
        rows = np.fromiter(
            (self._state(t).row for t in targets), dtype=np.int64, count=len(targets)
        )
        self.streams.update(rows[group], np.asarray(idx), ts, values)
        if not ts.size:
            return
        nows = np.full(len(targets), -np.inf)
        np.maximum.at(nows, group, ts)
        for target, ok, now in zip(targets, healthy, nows.tolist(), strict=True):
            if ok and now > -np.inf and self.wants_row(target, now):
                self._keep_row(self._targets[target], now)

    def _keep_row(self, state: _TargetState, now: float) -> None:
        state.rows.append(state.value.copy())
        state.row_ts.append(now)
        keep = int(self.policy.window_s / self.policy.stride_s) + 1
        if len(state.rows) > keep:
            del state.rows[: len(state.rows) - keep]
            del state.row_ts[: len(state.row_ts) - keep]

    def wants_row(self, target: str, now: float) -> bool:
        """Whether a baseline row is due (so the caller checks health only then)."""
        state = self._targets.get(target)
        return state is None or not state.row_ts or now - state.row_ts[-1] >= self.policy.stride_s

    def anomalies(self, target: str) -> list[Evidence]:
        """Series beyond their baseline for at least their catalog duration, now."""
        state = self._targets.get(target)
        if state is None or state.model is None:
            return []
        model = state.model
        held = state.ts - state.beyond_since
        live = state.ts >= np.nanmax(state.ts) - self.gap_s  # a silent series: no data
        moving = state.run <= model.stale_after  # a frozen one: stale
        hits = np.flatnonzero(np.isfinite(held) & (held >= self.duration) & live & moving)
        out = []
        for j in hits:
            value, expected = float(state.value[j]), float(state.expected[j])
            k = int(model.buckets(np.array([state.ts[j]]))[0])
            bound = float(model.threshold[j] * model.scale[j, k])
            high = value >= expected
            since = state.onset[j] if np.isfinite(state.onset[j]) else state.beyond_since[j]
            out.append(
                Evidence(
                    series=self.series[j],
                    value=value,
                    threshold=expected + bound if high else expected - bound,
                    direction="high" if high else "low",
                    since=float(since),
                    source="anomaly",
                    component=self.components[j],
                    deviation=float(state.z[j] / model.threshold[j]),
                )
            )
        out.sort(key=lambda e: (e.since, -(e.deviation or 0.0)))
        return out

    def forget(self, target: str) -> None:
        state = self._targets.pop(target, None)
        if state is not None:
            self.streams.free(state.row)
