"""Deterministic digital twin of the power-marketing service platform.

The twin is what the demo, the tests and ``mendloop eval rca`` run the loop against: it
emits the platform's metrics, lets a fault be injected, and recovers only when the
*right* repair action is applied, so a wrong fix is observable as "not recovering".

    >>> twin = Twin(targets=("pm-site-1",), seed=0)
    >>> samples = twin.step(1000.0)                 # time is passed in, never read
    >>> twin.inject("pm-site-1", "cache_saturation")
    >>> _ = [twin.step(1000.0 + s) for s in range(1, 11)]
    >>> twin.state("pm-site-1")["values"]["cache_hit_ratio"] < 0.6
    True
    >>> twin.repair("pm-site-1", "scale_out_cache")
    True

Everything is data: ``METRICS`` (baselines, noise, bounds, recovery time constant),
``FAULTS`` (per-series target value, causal delay, time constant) and ``ACTIONS``
(which faults an action clears). Scaling to the full catalog means adding rows.

Dynamics: each series follows a first-order lag towards its *goal* (the baseline, or
the most deviating effect of the faults active at that instant), integrated exactly
between breakpoints (fault start + delay, repair, rollback), so the result does not
depend on how often ``step`` is called. Noise (seeded ``numpy`` RNG) is added on output
only, never fed back into the state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loop.errors import MendloopError
from loop.models import Sample


class TwinError(MendloopError, ValueError):
    """An unknown target, fault or action was named; raised before anything changes."""


class UnknownTarget(TwinError):
    pass


class UnknownFault(TwinError):
    pass


class UnknownAction(TwinError):
    pass


@dataclass(frozen=True)
class MetricSpec:
    """One simulated series: healthy level, noise and how fast it recovers."""

    series: str
    subsystem: str
    unit: str
    baseline: float
    noise: float  # standard deviation of the output noise
    lo: float
    hi: float
    recover_tau_s: float  # time constant back to baseline once no fault drives it
    help: str


@dataclass(frozen=True)
class Effect:
    """A fault drives ``series`` towards ``value``, starting ``delay_s`` after onset."""

    series: str
    value: float
    delay_s: float
    tau_s: float


@dataclass(frozen=True)
class FaultSpec:
    name: str
    component: str
    description: str
    effects: tuple[Effect, ...]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    clears: frozenset[str]
    description: str


INF = math.inf

# Recovery time constants around 1 s bring a series back within ~5 % of its excursion in
# 3-5 s after the right repair: fast enough for the demo, slow enough to watch.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "cache_utilization_pct",
        "cache",
        "%",
        55.0,
        0.8,
        0.0,
        100.0,
        1.0,
        "Cache cluster memory utilisation.",
    ),
    MetricSpec(
        "cache_hit_ratio",
        "cache",
        "ratio",
        0.95,
        0.004,
        0.0,
        1.0,
        1.0,
        "Share of lookups served from the cache.",
    ),
    MetricSpec(
        "db_penetration_pct",
        "cache",
        "%",
        1.0,
        0.1,
        0.0,
        100.0,
        1.0,
        "Share of queries that miss every cache layer and reach the DB.",
    ),
    MetricSpec(
        "db_query_latency_ms", "database", "ms", 40.0, 2.0, 0.0, INF, 1.2, "Mean DB query latency."
    ),
    MetricSpec(
        "db_io_wait_pct",
        "database",
        "%",
        8.0,
        0.5,
        0.0,
        100.0,
        1.2,
        "Share of DB time spent waiting on IO.",
    ),
    MetricSpec(
        "api_response_time_ms",
        "application",
        "ms",
        120.0,
        4.0,
        0.0,
        INF,
        1.2,
        "Mean response time of the core service API.",
    ),
    MetricSpec(
        "payment_success_rate_pct",
        "payment",
        "%",
        99.9,
        0.02,
        0.0,
        100.0,
        1.5,
        "Share of payment transactions that succeed.",
    ),
)

# Paper, section 1.1: above 80 % utilisation LRU eviction fails, 12 % of queries penetrate
# to the DB and response time goes from 50 ms to 800 ms+. At > 500k tx/day DB queries
# take 72 % of the time, IO wait 41 %. Delays encode the causal order: the component's
# own series move first, its dependants ~2 s later.
FAULTS: dict[str, FaultSpec] = {
    f.name: f
    for f in (
        FaultSpec(
            "cache_saturation",
            "cache",
            "Cache cluster above 80 % utilisation: LRU eviction fails, queries penetrate "
            "to the database, response time explodes.",
            (
                Effect("cache_utilization_pct", 92.0, 0.0, 0.8),
                Effect("cache_hit_ratio", 0.45, 0.0, 0.8),
                Effect("db_penetration_pct", 12.0, 0.5, 0.8),
                Effect("db_io_wait_pct", 12.0, 2.0, 1.0),
                Effect("db_query_latency_ms", 800.0, 2.0, 1.0),
                Effect("api_response_time_ms", 1000.0, 2.5, 1.0),
                Effect("payment_success_rate_pct", 98.5, 3.0, 1.5),
            ),
        ),
        FaultSpec(
            "db_io_wait",
            "database",
            "Database IO saturated: IO wait ~41 %, queries slow down, the API follows; "
            "the cache stays healthy.",
            (
                Effect("db_io_wait_pct", 41.0, 0.0, 0.8),
                Effect("db_query_latency_ms", 600.0, 1.0, 1.0),
                Effect("api_response_time_ms", 750.0, 2.0, 1.0),
                Effect("payment_success_rate_pct", 99.4, 3.0, 1.5),
            ),
        ),
    )
}

ACTIONS: dict[str, ActionSpec] = {
    a.name: a
    for a in (
        ActionSpec(
            "scale_out_cache",
            frozenset({"cache_saturation"}),
            "Add cache nodes so utilisation falls back below the eviction cliff.",
        ),
        ActionSpec(
            "tune_db_io",
            frozenset({"db_io_wait"}),
            "Tune DB IO (buffer pool, IO scheduler, slow-query indexes).",
        ),
    )
}

_INDEX = {m.series: i for i, m in enumerate(METRICS)}
_BASE = np.array([m.baseline for m in METRICS])
_NOISE = np.array([m.noise for m in METRICS])
_LO = np.array([m.lo for m in METRICS])
_HI = np.array([m.hi for m in METRICS])
_RECOVER_TAU = np.array([m.recover_tau_s for m in METRICS])


def _check_tables() -> None:
    """Refuse inconsistent tables at import: a typo would otherwise be a silent no-op."""
    for fault in FAULTS.values():
        for e in fault.effects:
            if e.series not in _INDEX:
                raise TwinError(f"fault {fault.name!r}: unknown series {e.series!r}")
    for action in ACTIONS.values():
        if unknown := action.clears - FAULTS.keys():
            raise TwinError(f"action {action.name!r}: unknown faults {sorted(unknown)}")


_check_tables()


@dataclass
class _Episode:
    """A fault's active interval. ``since`` anchors the causal delays; ``active_from``
    differs from it only for a fault re-instated by a rollback (delays already elapsed)."""

    fault: str
    since: float
    active_from: float
    cleared: float | None = None

    def drives(self, effect: Effect, t: float) -> bool:
        """True if this episode pushes ``effect`` during the instant just before ``t``."""
        started = max(self.since + effect.delay_s, self.active_from)
        return started < t and (self.cleared is None or t <= self.cleared)

    def breakpoints(self) -> Iterable[float]:
        for e in FAULTS[self.fault].effects:
            yield max(self.since + e.delay_s, self.active_from)
        if self.cleared is not None:
            yield self.cleared


@dataclass
class _ActionRecord:
    action: str
    at: float
    cleared: tuple[_Episode, ...]  # the episodes this application ended
    rolled_back_at: float | None = None


@dataclass
class _TargetState:
    level: np.ndarray  # noise-free state, one entry per METRICS row
    episodes: list[_Episode] = field(default_factory=list)
    actions: list[_ActionRecord] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)

    def active(self) -> list[_Episode]:
        return [e for e in self.episodes if e.cleared is None]


class Twin:
    """The simulation: pure and deterministic for a given seed and call sequence.

    Control calls (``inject``, ``repair``, ...) take an optional ``now``; by default they
    happen at the twin's clock, the ``now`` of the last ``step``. A ``now`` earlier than
    that clock is moved up to it: the past is never rewritten.
    """

    def __init__(self, targets: Iterable[str] = ("pm-site-1",), seed: int = 0) -> None:
        self.targets: tuple[str, ...] = tuple(targets)
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise TwinError(f"targets must be non-empty and unique, got {self.targets!r}")
        self._rng = np.random.default_rng(seed)
        self._clock: float | None = None
        self._state = {t: _TargetState(level=_BASE.copy()) for t in self.targets}

    @property
    def series(self) -> tuple[str, ...]:
        return tuple(m.series for m in METRICS)

    @property
    def clock(self) -> float | None:
        """The ``now`` of the last step (None before the first)."""
        return self._clock

    def step(self, now: float) -> list[Sample]:
        """Advance every target to ``now`` and emit one sample per series and target."""
        start = now if self._clock is None else self._clock
        if self._clock is None:
            # control calls made before the first step happen at the first step
            for st in self._state.values():
                for ep in st.episodes:
                    ep.since = ep.active_from = now
                    ep.cleared = None if ep.cleared is None else now
                for record in st.actions:
                    record.at = now
        end = max(start, now)
        samples: list[Sample] = []
        noise = self._rng.normal(0.0, 1.0, size=(len(self.targets), len(METRICS))) * _NOISE
        for row, target in enumerate(self.targets):
            st = self._state[target]
            _integrate(st, start, end)
            out = np.clip(st.level + noise[row], _LO, _HI)
            st.values = {m.series: float(v) for m, v in zip(METRICS, out, strict=True)}
            samples.extend(
                Sample(
                    series=m.series,
                    labels={"target": target, "subsystem": m.subsystem},
                    ts=now,
                    value=float(v),
                )
                for m, v in zip(METRICS, out, strict=True)
            )
        self._clock = end
        return samples

    def latest(self) -> list[Sample]:
        """The samples emitted by the last step (empty before the first)."""
        if self._clock is None:
            return []
        return [
            Sample(
                series=m.series,
                labels={"target": t, "subsystem": m.subsystem},
                ts=self._clock,
                value=self._state[t].values[m.series],
            )
            for t in self.targets
            for m in METRICS
        ]

    def inject(self, target: str, fault: str, now: float | None = None) -> None:
        """Start ``fault`` on ``target``; injecting an already active fault is a no-op."""
        st = self._target(target)
        if fault not in FAULTS:
            raise UnknownFault(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        if any(e.fault == fault for e in st.active()):
            return
        t = self._at(now)
        st.episodes.append(_Episode(fault, since=t, active_from=t))

    def repair(self, target: str, action: str, now: float | None = None) -> bool:
        """Apply ``action``; True if it cleared an active fault. Always recorded, so a
        wrong fix is visible in the state as applied-but-ineffective."""
        st = self._target(target)
        spec = self._action(action)
        t = self._at(now)
        cleared = tuple(e for e in st.active() if e.fault in spec.clears)
        for ep in cleared:
            ep.cleared = t
        st.actions.append(_ActionRecord(action, t, cleared))
        return bool(cleared)

    def rollback(self, target: str, action: str, now: float | None = None) -> bool:
        """Revert the last not-yet-reverted application of ``action``.

        Returns True if there was one. The faults that application cleared come back
        with their original onset (their causal delays have elapsed, so every effect
        resumes at once); an application that cleared nothing reverts to nothing.
        """
        st = self._target(target)
        self._action(action)
        record = next(
            (r for r in reversed(st.actions) if r.action == action and r.rolled_back_at is None),
            None,
        )
        if record is None:
            return False
        t = self._at(now)
        record.rolled_back_at = t
        for ep in record.cleared:
            if not any(e.fault == ep.fault for e in st.active()):
                st.episodes.append(_Episode(ep.fault, since=ep.since, active_from=t))
        return True

    def clear(self, target: str, now: float | None = None) -> None:
        """End every fault on ``target`` and forget its action log (between scenarios);
        the metrics still decay back smoothly."""
        st = self._target(target)
        t = self._at(now)
        for ep in st.active():
            ep.cleared = t
        st.actions.clear()

    def state(self, target: str) -> dict[str, Any]:
        """JSON-ready view: active faults, actions applied, latest values."""
        st = self._target(target)
        return {
            "target": target,
            "time": self._clock,
            "faults": [e.fault for e in st.active()],
            "fault_since": {e.fault: e.since for e in st.active()},
            "actions": [
                {
                    "action": r.action,
                    "at": r.at,
                    "cleared": [e.fault for e in r.cleared],
                    "rolled_back_at": r.rolled_back_at,
                }
                for r in st.actions
            ],
            "values": dict(st.values),
        }

    def _target(self, target: str) -> _TargetState:
        try:
            return self._state[target]
        except KeyError:
            raise UnknownTarget(f"unknown target {target!r}; known: {list(self.targets)}") from None

    @staticmethod
    def _action(action: str) -> ActionSpec:
        try:
            return ACTIONS[action]
        except KeyError:
            raise UnknownAction(f"unknown action {action!r}; known: {sorted(ACTIONS)}") from None

    def _at(self, now: float | None) -> float:
        if self._clock is None:
            return now if now is not None else 0.0  # re-anchored by the first step
        return self._clock if now is None else max(now, self._clock)


def _goal(episodes: list[_Episode], t: float) -> tuple[np.ndarray, np.ndarray]:
    """Goal and time constant per series just before ``t``: the most deviating effect wins."""
    goal, tau = _BASE.copy(), _RECOVER_TAU.copy()
    deviation = np.zeros(len(METRICS))
    for ep in episodes:
        for e in FAULTS[ep.fault].effects:
            i = _INDEX[e.series]
            d = abs(e.value - _BASE[i])
            if ep.drives(e, t) and d > deviation[i]:
                goal[i], tau[i], deviation[i] = e.value, e.tau_s, d
    return goal, tau


def _integrate(st: _TargetState, start: float, end: float) -> None:
    """Exact first-order lag from ``start`` to ``end``, piecewise between breakpoints."""
    if end <= start:
        return
    cuts = sorted({b for ep in st.episodes for b in ep.breakpoints() if start < b < end})
    t0 = start
    for t1 in [*cuts, end]:
        goal, tau = _goal(st.episodes, t1)
        st.level = goal + (st.level - goal) * np.exp(-(t1 - t0) / tau)
        t0 = t1
    # episodes that ended before this step can no longer matter
    st.episodes = [e for e in st.episodes if e.cleared is None or e.cleared > end]


def metric_specs() -> Mapping[str, MetricSpec]:
    """Series name -> spec, for exposition (HELP lines) and callers that need units."""
    return {m.series: m for m in METRICS}
