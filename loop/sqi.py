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
        self._values: dict[str, np.ndarray] = {}
        self._now: dict[str, SQIResult] = {}
        self._low_since: dict[str, float] = {}
        self._found: list[Finding] = []

    def update(self, target: str, points: Iterable[tuple[str, float]], now: float) -> None:
        """Newest (series, value) points of ``target``; series outside the SQI are ignored,
        and a batch without any SQI metric leaves the target's SQI as it was."""
        current = self._values.get(target)
        if current is None:
            current = self._values[target] = self.model.empty()
        hit = False
        for series, value in points:
            k = self.model.index.get(series)
            if k is not None:
                current[k] = value
                hit = True
        if hit:
            self._judge(target, current, now)

    def update_columns(self, target: str, k: np.ndarray, values: np.ndarray, now: float) -> None:
        """``update`` with the points as columns: ``k`` is each point's index in
        ``model.series`` (-1: not an SQI metric), in order (a later value wins)."""
        current = self._values.get(target)
        if current is None:
            current = self._values[target] = self.model.empty()
        mine = k >= 0
        if mine.any():
            current[k[mine]] = values[mine]
            self._judge(target, current, now)

    def _judge(self, target: str, current: np.ndarray, now: float) -> None:
        if (result := self.model.score(current)) is None:
            return
        self._now[target] = result
        if result.alert and target not in self._low_since:
            self._low_since[target] = now
            self._found.append(sqi_finding(target, result, now))
        elif not result.alert:
            self._low_since.pop(target, None)

    def current(self, target: str) -> SQIResult | None:
        return self._now.get(target)

    def drain(self) -> list[Finding]:
        """The ``sqi`` findings since the last call."""
        found, self._found = self._found, []
        return found
