"""The twin's tables compiled to numpy: one row per catalog series, one per effect.

A fault's effects are its own plus those the dependency graph hands to its dependants
(``expand``); every (fault, series) pair becomes one *effect* column, so the simulation
works on (targets x series) and (targets x effects) arrays without Python loops. The
import refuses a table that names an unknown series, or an effect on a series that does
not belong to the component it claims to move.

    >>> [e.series for e in fault_effects("db_io_wait")][:2]
    ['db_io_wait_pct', 'host_db_01_disk_io_util_pct']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rules.catalog import load_catalog
from twin.catalog_baselines import baseline_rows
from twin.errors import TwinError
from twin.faults import FAULTS, Dependency, Effect, FaultSpec, component_of, edges_into, reach
from twin.remedies import ACTIONS


@dataclass(frozen=True)
class MetricSpec:
    """One simulated series: healthy level, noise and how fast it recovers."""

    series: str
    subsystem: str
    unit: str
    baseline: float
    noise: float  # standard deviation of the output noise (clipped at 3 sd)
    lo: float
    hi: float
    recover_tau_s: float  # time constant back to baseline once no fault drives it
    help: str
    component: str = ""
    load_amp: float = 0.0


# Recovery time constants around 1 s bring a series back within ~5 % of its excursion in
# 3-5 s after the right repair; complaints linger longer (people call after the fact).
RECOVER_TAU_S: dict[str, float] = {"customer_service": 5.0, "meter": 1.5, "nbiot": 1.5}

_ROWS = baseline_rows(load_catalog())
METRICS: tuple[MetricSpec, ...] = tuple(
    MetricSpec(
        r.series,
        r.subsystem,
        r.unit,
        r.base,
        r.noise,
        r.lo,
        r.hi,
        RECOVER_TAU_S.get(r.subsystem, 1.0),
        r.help,
        component_of(r.series, r.subsystem),
        r.load_amp,
    )
    for r in _ROWS.values()
)
SERIES: tuple[str, ...] = tuple(m.series for m in METRICS)
_INDEX = {s: i for i, s in enumerate(SERIES)}
BASE = np.array([m.baseline for m in METRICS])
AMP = np.array([m.load_amp for m in METRICS])
NOISE = np.array([m.noise for m in METRICS])
LO = np.array([m.lo for m in METRICS])
HI = np.array([m.hi for m in METRICS])
IDEAL = np.array([r.ideal for r in _ROWS.values()])
RECOVER_TAU = np.array([m.recover_tau_s for m in METRICS])
_COMPONENT = {m.series: m.component for m in METRICS}


def _match(pattern: str, where: str) -> list[int]:
    found = [_INDEX[s] for s in SERIES if fnmatch.fnmatchcase(s, pattern)]
    if not found:
        raise TwinError(f"{where}: no catalog series matches {pattern!r}")
    return found


@dataclass(frozen=True)
class FlatEffect:
    """One effect on one concrete series, with its delay from the fault's onset."""

    fault: str
    series: str
    value: float
    relative: bool
    delay_s: float
    tau_s: float
    scale: float  # strength along the dependency path (1 for the fault's own effects)
    own: bool


def expand(fault: FaultSpec) -> list[FlatEffect]:
    """The fault's own effects plus every dependant's, via the dependency graph."""
    out: list[FlatEffect] = []

    def add(e: Effect, delay: float, scale: float, own: bool, component: str, where: str) -> None:
        for i in _match(e.series, where):
            series = SERIES[i]
            if _COMPONENT[series] != component:
                raise TwinError(
                    f"{where}: {series} belongs to {_COMPONENT[series]}, not {component}"
                )
            out.append(
                FlatEffect(fault.name, series, e.value, e.relative, delay, e.tau_s, scale, own)
            )

    for e in fault.effects:
        add(e, e.delay_s, 1.0, True, fault.component, f"fault {fault.name}")
    nodes = list(reach(fault.component, fault.spread))
    strength = {node: s for node, _, s in nodes}
    onset = {node: fault.propagates_after_s + d for node, d, _ in nodes}
    for node, _, _ in nodes[1:]:
        dep: Dependency
        for dep in edges_into(node, onset):
            if strength[dep.upstream] <= 0:
                continue
            start = onset[dep.upstream] + dep.delay_s
            where = f"dependency {dep.upstream}->{dep.dependant}"
            for e in dep.effects:
                add(e, start + e.delay_s, strength[dep.upstream], False, dep.dependant, where)
    return out


FLAT: list[FlatEffect] = []
FAULT_SLICE: dict[str, slice] = {}
for _name, _fault in FAULTS.items():
    _effects = expand(_fault)
    FAULT_SLICE[_name] = slice(len(FLAT), len(FLAT) + len(_effects))
    FLAT.extend(_effects)
E_SERIES = np.array([_INDEX[e.series] for e in FLAT], dtype=np.intp)
E_VALUE = np.array([e.value for e in FLAT])
E_REL = np.array([e.relative for e in FLAT])
E_DELAY = np.array([e.delay_s for e in FLAT])
E_TAU = np.array([e.tau_s for e in FLAT])
E_SCALE = np.array([e.scale for e in FLAT])
E_RECOVER = RECOVER_TAU[E_SERIES]
TUNES: dict[str, tuple[np.ndarray, np.ndarray]] = {}
for _action in ACTIONS.values():
    if _unknown := _action.clears - FAULTS.keys():
        raise TwinError(f"action {_action.name!r}: unknown faults {sorted(_unknown)}")
    _idx = [(i, f) for pattern, f in _action.tunes for i in _match(pattern, _action.name)]
    TUNES[_action.name] = (
        np.array([i for i, _ in _idx], dtype=np.intp),
        np.array([f for _, f in _idx], dtype=float),
    )


def fault_effects(fault: str) -> list[FlatEffect]:
    """The concrete effects of ``fault`` (own and propagated), for tests and docs."""
    return FLAT[FAULT_SLICE[fault]]


def metric_specs() -> Mapping[str, MetricSpec]:
    """Series name -> spec, for exposition (HELP lines) and callers that need units."""
    return {m.series: m for m in METRICS}
