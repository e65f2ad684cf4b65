"""Deterministic digital twin of the power-marketing service platform.

The twin is what the demo, the tests and the evaluations run the loop against: it emits
all 286 catalog series for every target, lets faults be injected (overlapping, with an
intensity), and recovers only when the *right* remedy is applied, so a wrong fix is
observable as "not recovering".

    >>> twin = Twin(targets=("pm-site-1",), seed=0)
    >>> samples = twin.step(1000.0)                 # time is passed in, never read
    >>> len(samples)
    286
    >>> twin.inject("pm-site-1", "cache_saturation")
    >>> _ = [twin.step(1000.0 + s) for s in range(1, 11)]
    >>> twin.state("pm-site-1")["values"]["cache_hit_ratio"] < 0.6
    True
    >>> twin.repair("pm-site-1", "scale_out_cache")
    True

Everything is data: healthy behaviour comes from the catalog (``twin.catalog_baselines``),
faults and the component dependency graph from ``twin.faults``, remedies from
``twin.remedies``; ``twin.effects`` compiles them to arrays.

Dynamics: every (fault, affected series) pair is an *effect* with an activation in
[0, 1] that follows a first-order lag towards 1 while the fault drives it (after its
causal delay) and back to 0 otherwise. A series is its healthy level (daily load shape,
lasting tuning by remedies) plus the largest deviation among its effects, each effect
pulling ``activation x intensity`` of the way to its fault value. Activations are
integrated exactly between breakpoints (onsets, repairs, rollbacks), so the result does
not depend on how often ``step`` is called. Everything is numpy over (targets x series)
and (targets x effects). Noise (seeded, clipped at 3 sd) is added on output only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernel.models import Sample
from twin.catalog_baselines import NOISE_CLIP, load_shape
from twin.effects import (
    AMP,
    BASE,
    E_DELAY,
    E_RECOVER,
    E_REL,
    E_SCALE,
    E_SERIES,
    E_TAU,
    E_VALUE,
    FAULT_SLICE,
    FLAT,
    HI,
    IDEAL,
    LO,
    METRICS,
    NOISE,
    SERIES,
    TUNES,
    FlatEffect,
    MetricSpec,
    fault_effects,
    metric_specs,
)
from twin.errors import TwinError, UnknownAction, UnknownFault, UnknownTarget
from twin.faults import DEPENDENCIES, FAULTS, Dependency, Effect, FaultSpec
from twin.remedies import ACTIONS, ActionSpec
from twin.samples import build_samples


@dataclass
class _Episode:
    """A fault's active interval. ``since`` anchors the causal delays; ``active_from``
    differs from it only for a fault re-instated by a rollback (delays already elapsed)."""

    fault: str
    since: float
    active_from: float
    intensity: float = 1.0
    cleared: float | None = None

    def driven(self, t: float) -> np.ndarray:
        """Which of the fault's effects push during the instant just before ``t``."""
        started = np.maximum(self.since + E_DELAY[FAULT_SLICE[self.fault]], self.active_from)
        return (started < t) & (self.cleared is None or t <= self.cleared)

    def breakpoints(self) -> Iterable[float]:
        delays = E_DELAY[FAULT_SLICE[self.fault]]
        yield from np.maximum(self.since + delays, self.active_from).tolist()
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
    row: int
    episodes: list[_Episode] = field(default_factory=list)
    actions: list[_ActionRecord] = field(default_factory=list)

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
        n = len(self.targets)
        self._rng = np.random.default_rng(seed)
        self._clock: float | None = None
        self._state = {t: _TargetState(row=i) for i, t in enumerate(self.targets)}
        self._act = np.zeros((n, len(FLAT)))  # effect activations in [0, 1]
        self._intensity = np.ones((n, len(FLAT)))
        self._tune = np.ones((n, len(SERIES)))  # lasting changes made by remedies
        self._out = np.zeros((n, len(SERIES)))  # last emitted values
        self._labels = [
            [{"target": t, "subsystem": m.subsystem} for m in METRICS] for t in self.targets
        ]

    @property
    def series(self) -> tuple[str, ...]:
        return SERIES

    @property
    def clock(self) -> float | None:
        """The ``now`` of the last step (None before the first)."""
        return self._clock

    def advance(self, now: float) -> np.ndarray:
        """Advance every target to ``now``; the emitted values, targets x series (a view
        the next call overwrites). The vectorised core of ``step``."""
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
        self._integrate(start, end)
        self._clock = end
        noise = np.clip(self._rng.standard_normal(self._out.shape), -NOISE_CLIP, NOISE_CLIP)
        np.clip(self._level(end) + noise * NOISE, LO, HI, out=self._out)
        return self._out

    def step(self, now: float) -> list[Sample]:
        """Advance every target to ``now`` and emit one sample per series and target."""
        self.advance(now)
        return self._samples(now)

    def latest(self) -> list[Sample]:
        """The samples emitted by the last step (empty before the first)."""
        return [] if self._clock is None else self._samples(self._clock)

    def levels(self, target: str) -> dict[str, float]:
        """Noise-free values at the clock: the state the dynamics integrate."""
        st = self._target(target)
        level = self._level(self._clock or 0.0)[st.row]
        return dict(zip(SERIES, level.tolist(), strict=True))

    def inject(
        self, target: str, fault: str, now: float | None = None, intensity: float = 1.0
    ) -> None:
        """Start ``fault`` on ``target`` at ``intensity`` (1: the paper's figures; 0.5:
        half-way there); injecting an already active fault is a no-op."""
        st = self._target(target)
        if fault not in FAULTS:
            raise UnknownFault(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        if not (math.isfinite(intensity) and intensity >= 0):
            raise TwinError(f"intensity must be a finite number >= 0, got {intensity!r}")
        if any(e.fault == fault for e in st.active()):
            return
        t = self._at(now)
        self._start(st, _Episode(fault, since=t, active_from=t, intensity=intensity))

    def repair(self, target: str, action: str, now: float | None = None) -> bool:
        """Apply ``action``; True if it cleared an active fault. Always recorded (and its
        lasting tuning applied), so a wrong fix is visible as applied-but-ineffective."""
        st = self._target(target)
        self._action(action)
        t = self._at(now)
        cleared = tuple(e for e in st.active() if e.fault in ACTIONS[action].clears)
        for ep in cleared:
            ep.cleared = t
        idx, factor = TUNES[action]
        self._tune[st.row, idx] *= factor
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
        idx, factor = TUNES[action]
        self._tune[st.row, idx] /= factor
        for ep in record.cleared:
            if not any(e.fault == ep.fault for e in st.active()):
                again = _Episode(ep.fault, since=ep.since, active_from=t, intensity=ep.intensity)
                self._start(st, again)
        return True

    def clear(self, target: str, now: float | None = None) -> None:
        """End every fault on ``target``, undo every remedy's tuning and forget the action
        log (between scenarios); the metrics still decay back smoothly."""
        st = self._target(target)
        t = self._at(now)
        for ep in st.active():
            ep.cleared = t
        st.actions.clear()
        self._tune[st.row] = 1.0

    def state(self, target: str) -> dict[str, Any]:
        """JSON-ready view: active faults, actions applied, latest values."""
        st = self._target(target)
        active = st.active()
        return {
            "target": target,
            "time": self._clock,
            "faults": [e.fault for e in active],
            "fault_since": {e.fault: e.since for e in active},
            "fault_intensity": {e.fault: e.intensity for e in active},
            "actions": [
                {
                    "action": r.action,
                    "at": r.at,
                    "cleared": [e.fault for e in r.cleared],
                    "rolled_back_at": r.rolled_back_at,
                }
                for r in st.actions
            ],
            "values": (
                {}
                if self._clock is None
                else dict(zip(SERIES, self._out[st.row].tolist(), strict=True))
            ),
        }

    # -- internals ---------------------------------------------------------------------

    def _samples(self, ts: float) -> list[Sample]:
        return build_samples(self._out, SERIES, self._labels, ts)

    def _start(self, st: _TargetState, ep: _Episode) -> None:
        st.episodes.append(ep)
        self._intensity[st.row, FAULT_SLICE[ep.fault]] = ep.intensity

    def _level(self, t: float) -> np.ndarray:
        """Noise-free values at ``t``: healthy level plus the largest deviation."""
        healthy = BASE * (1.0 + AMP * load_shape(t))
        base = IDEAL + self._tune * (healthy - IDEAL)
        if not self._act.any():
            return base
        at = base[:, E_SERIES]
        goal = np.where(E_REL, at * E_VALUE, E_VALUE)
        dev = self._act * self._intensity * E_SCALE * (goal - at)
        up = np.zeros_like(base)
        down = np.zeros_like(base)
        np.maximum.at(up.T, E_SERIES, dev.T)
        np.minimum.at(down.T, E_SERIES, dev.T)
        return base + np.where(up >= -down, up, down)

    def _integrate(self, start: float, end: float) -> None:
        """Exact first-order lag of every activation from ``start`` to ``end``."""
        if end <= start:
            return
        calm = [st.row for st in self._state.values() if not st.episodes]
        if calm:
            self._act[calm] *= np.exp(-(end - start) / E_RECOVER)
        for st in self._state.values():
            if not st.episodes:
                continue
            cuts = sorted({b for ep in st.episodes for b in ep.breakpoints() if start < b < end})
            act = self._act[st.row]
            t0 = start
            for t1 in [*cuts, end]:
                driven = np.zeros(len(FLAT), dtype=bool)
                for ep in st.episodes:
                    driven[FAULT_SLICE[ep.fault]] |= ep.driven(t1)
                tau = np.where(driven, E_TAU, E_RECOVER)
                act = driven + (act - driven) * np.exp(-(t1 - t0) / tau)
                t0 = t1
            self._act[st.row] = act
            # episodes that ended before this point can no longer matter
            st.episodes = [e for e in st.episodes if e.cleared is None or e.cleared > end]

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


__all__ = [
    "ACTIONS",
    "DEPENDENCIES",
    "FAULTS",
    "METRICS",
    "SERIES",
    "ActionSpec",
    "Dependency",
    "Effect",
    "FaultSpec",
    "FlatEffect",
    "MetricSpec",
    "Twin",
    "TwinError",
    "UnknownAction",
    "UnknownFault",
    "UnknownTarget",
    "fault_effects",
    "metric_specs",
]
