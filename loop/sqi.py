"""Service Quality Index (paper 2.2): response time 40 %, success rate 30 %, utilisation
20 %, error rate 10 %; below 80 is an alert. Pure functions over the catalog.

    model = SQIModel(catalog)
    result = model.score({"api_response_time_ms": 560.0, ...})     # latest values
    result.sqi, result.roles, result.dragging                     # 68.0, {...}, (...)

Which metric plays which part comes from the catalog's ``sqi_role``. Each metric is put on
0..100 by its own catalog thresholds, nothing else:

    score = 100                                    on the good side of warn (healthy)
    score = 100 * (crit - v) / (crit - warn)       between warn and crit (bad = high;
                                                   mirrored for bad = low)
    score = 0                                      at or past crit

so warn is where a metric stops being fully good and crit where it has failed. A role's
score is its *worst* metric (a customer meets the slowest service, not the average one);
the SQI is the weighted sum of the role scores. A role with no metric reported is left out
and the remaining weights are rescaled, so missing data neither helps nor hurts. With
these scales the paper's alert line means: one response-time metric half way from warn to
crit (100 - 0.4 x 50 = 80) is on the line, a success rate at crit (70) is below it, an
error rate at crit alone (90) is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from kernel.models import Evidence, Finding, FindingKind
from rules.catalog import Catalog

WEIGHTS: dict[str, float] = {
    "response_time": 0.40,
    "success_rate": 0.30,
    "utilisation": 0.20,
    "error_rate": 0.10,
}
ALERT_BELOW = 80.0  # the paper's alert line


@dataclass(frozen=True)
class Drag:
    """One metric pulling the SQI down: its own 0..100 score and the SQI points it costs."""

    series: str
    component: str
    role: str
    value: float
    score: float
    cost: float


@dataclass(frozen=True)
class SQIResult:
    sqi: float
    roles: dict[str, float]  # role -> 0..100 (only roles with a reported metric)
    dragging: tuple[Drag, ...]  # worst first; metrics below 100 in their role's worst spot

    @property
    def alert(self) -> bool:
        return self.sqi < ALERT_BELOW

    @property
    def components(self) -> tuple[str, ...]:
        """Components dragging the SQI down, worst first."""
        return tuple(dict.fromkeys(d.component for d in self.dragging))


def metric_scores(
    values: np.ndarray, warn: np.ndarray, crit: np.ndarray, high_is_bad: np.ndarray
) -> np.ndarray:
    """0..100 per metric from its warn/crit thresholds (see the module docstring); NaN
    (not reported) stays NaN."""
    past_warn = np.where(high_is_bad, values - warn, warn - values)
    span = np.abs(crit - warn)
    frac = np.clip(past_warn / np.where(span > 0, span, 1.0), 0.0, 1.0)
    frac = np.where(span > 0, frac, (past_warn > 0).astype(float))  # warn == crit: a step
    return np.where(np.isnan(values), np.nan, 100.0 * (1.0 - frac))


class SQIModel:
    """The catalog's SQI metrics as arrays, so one target's SQI costs a few numpy ops."""

    def __init__(self, catalog: Catalog) -> None:
        specs = [m for m in catalog.values() if m.sqi_role in WEIGHTS]
        self.series = tuple(m.name for m in specs)
        self.index = {name: i for i, name in enumerate(self.series)}
        self.roles = tuple(m.sqi_role for m in specs)
        self.components = tuple(m.component for m in specs)
        self.warn = np.array([m.warn for m in specs], dtype=float)
        self.crit = np.array([m.crit for m in specs], dtype=float)
        self.high_is_bad = np.array([m.bad == "high" for m in specs])
        self._role_masks = {
            role: np.array([r == role for r in self.roles], dtype=bool) for role in WEIGHTS
        }

    def empty(self) -> np.ndarray:
        """A values vector with nothing reported yet (NaN)."""
        return np.full(len(self.series), np.nan)

    def sqi_many(self, values: np.ndarray) -> np.ndarray:
        """The SQI number of each row of ``values`` ([targets, series]), exactly as
        ``score`` computes it (same operations in the same order); NaN where no SQI metric
        was reported."""
        scores = metric_scores(values, self.warn, self.crit, self.high_is_bad)
        total = np.zeros(len(values))
        weighted = np.zeros(len(values))
        for role, mask in self._role_masks.items():
            mine = mask & ~np.isnan(scores)
            present = mine.any(axis=1)
            worst = np.where(mine, scores, np.inf).min(axis=1, initial=np.inf)
            total = total + np.where(present, WEIGHTS[role], 0.0)
            weighted = weighted + np.where(present, WEIGHTS[role] * worst, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sqi = np.minimum(100.0, np.maximum(0.0, weighted / total))
        return np.where(total > 0, sqi, np.nan)

    def score(self, values: Mapping[str, float] | np.ndarray) -> SQIResult | None:
        """The SQI of one target's latest values (a mapping by series, or a vector in
        ``self.series`` order); None when no SQI metric has been reported."""
        if isinstance(values, np.ndarray):
            v = values.astype(float, copy=False)
        else:
            v = self.empty()
            for name, value in values.items():
                if name in self.index:
                    v[self.index[name]] = value
        scores = metric_scores(v, self.warn, self.crit, self.high_is_bad)
        roles: dict[str, float] = {}
        for role, mask in self._role_masks.items():
            role_scores = np.where(mask, scores, np.nan)
            if not np.all(np.isnan(role_scores)):
                roles[role] = float(np.nanmin(role_scores))
        if not roles:
            return None
        total = sum(WEIGHTS[r] for r in roles)
        sqi = min(100.0, max(0.0, sum(WEIGHTS[r] * s for r, s in roles.items()) / total))
        dragging = []
        for role in roles:
            if roles[role] >= 100.0:
                continue
            mask = self._role_masks[role] & (scores < 100.0)
            for j in np.flatnonzero(mask):
                # the worst metric costs its role's loss; the others would cost theirs
                cost = WEIGHTS[role] / total * (100.0 - float(scores[j]))
                dragging.append(
                    Drag(
                        self.series[j],
                        self.components[j],
                        role,
                        float(v[j]),
                        float(scores[j]),
                        cost,
                    )
                )
        dragging.sort(key=lambda d: (-d.cost, d.series))
        return SQIResult(float(sqi), roles, tuple(dragging))


def sqi_finding(target: str, result: SQIResult, since: float) -> Finding:
    """SQI below 80, naming the metrics (and so the components) that drag it down."""
    evidence = tuple(
        Evidence(
            series=d.series,
            value=d.value,
            threshold=d.score,
            direction="low",
            since=since,
            source="sqi",
            component=d.component,
            deviation=d.cost,
        )
        for d in result.dragging
    )
    return Finding(
        kind=FindingKind.sqi,
        target=target,
        series=tuple(d.series for d in result.dragging),
        rule_id=f"sqi:{result.sqi:.1f}:" + ",".join(result.components),
        started_at=since,
        score=max(0.0, min(1.0, 1.0 - result.sqi / 100.0)),
        evidence=evidence,
    )


class SQITracker:
    """Each target's SQI on its newest values, and one ``sqi`` finding per episode below
    80 (kept until ``drain``). Not thread-safe: the analyzer calls it under its lock.

        tracker = SQITracker(SQIModel(catalog))
        tracker.update("t", [("api_response_time_ms", 560.0)], now)
        tracker.current("t"), tracker.drain()
    """

    def __init__(self, model: SQIModel) -> None:
        self.model = model
        self._rows: dict[str, int] = {}
        self._values = np.full((16, len(model.series)), np.nan)  # [targets, SQI metrics]
        self._scored: set[str] = set()  # targets with an SQI (its metrics reported)
        self._now: dict[str, SQIResult] = {}  # built when asked (``current``), then kept
        self._low_since: dict[str, float] = {}
        self._found: list[Finding] = []

    def _row(self, target: str) -> int:
        row = self._rows.get(target)
        if row is None:
            row = self._rows[target] = len(self._rows)
            if row >= len(self._values):
                grown = np.full((2 * len(self._values), self._values.shape[1]), np.nan)
                grown[: len(self._values)] = self._values
                self._values = grown
        return row

    def update(self, target: str, points: Iterable[tuple[str, float]], now: float) -> None:
        """Newest (series, value) points of ``target``; series outside the SQI are ignored,
        and a batch without any SQI metric leaves the target's SQI as it was."""
        k, values = [], []
        for series, value in points:
            k.append(self.model.index.get(series, -1))
            values.append(value)
        n = len(k)
        self.update_many(
            [target],
            np.array(k, dtype=np.int64),
            np.array(values, dtype=float),
            np.zeros(n, dtype=np.int64),
            [now],
        )

    def update_many(
        self,
        targets: list[str],
        k: np.ndarray,
        values: np.ndarray,
        group: np.ndarray,
        nows: list[float],
    ) -> None:
        """``update`` for several targets at once: point ``i`` (``k[i]`` its index in
        ``model.series``, -1 if not an SQI metric) belongs to ``targets[group[i]]``, judged
        at ``nows[group[i]]``; points in order (a later value wins); findings in target
        order. One numpy pass scores all of them."""
        rows = np.array([self._row(t) for t in targets], dtype=np.int64)
        mine = k >= 0
        if not mine.any():
            return
        self._values[rows[group[mine]], k[mine]] = values[mine]
        hit = np.zeros(len(targets), dtype=bool)
        hit[group[mine]] = True
        sqi = self.model.sqi_many(self._values[rows[hit]])
        for j, number in zip(np.flatnonzero(hit).tolist(), sqi.tolist(), strict=True):
            if number != number:  # NaN: nothing reported (as ``score`` returning None)
                continue
            target = targets[j]
            self._scored.add(target)
            self._now.pop(target, None)
            if number < ALERT_BELOW and target not in self._low_since:
                self._low_since[target] = nows[j]
                result = self.current(target)
                assert result is not None
                self._found.append(sqi_finding(target, result, nows[j]))
            elif number >= ALERT_BELOW:
                self._low_since.pop(target, None)

    def current(self, target: str) -> SQIResult | None:
        """The target's SQI on its newest values (None before any SQI metric came)."""
        if target not in self._scored:
            return None
        result = self._now.get(target)
        if result is None:
            result = self.model.score(self._values[self._rows[target]].copy())
            assert result is not None
            self._now[target] = result
        return result

    def drain(self) -> list[Finding]:
        """The ``sqi`` findings since the last call."""
        found, self._found = self._found, []
        return found
