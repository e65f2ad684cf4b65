"""The twin's failure modes, its component dependency graph and its remedies, as data.

The data is ``twin/faults.yaml``, loaded and validated here at import (a bad file is
refused whole, with the file and the offending entry named). A fault names its component
and the effects on that component's own series. What it does to the rest of the platform
is *not* written on the fault: it follows from ``DEPENDENCIES``, a table of (upstream ->
dependant, delay, effects on the dependant, carry), walked from the fault's component. So
cache saturation reaches the database after 2 s, the API 1 s later, payments 1 s after
that and complaints 15 s later, because those edges exist, not because the fault lists
them.

    >>> [(c, d) for c, d, _ in reach("cache", 1.0)][:3]
    [('cache', 0.0), ('database', 2.0), ('api', 3.0)]

Figures are the paper's (../shared/seed/paper-digest.md); ``docs/TWIN.md`` renders these
tables.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

FAULTS_FILE = Path(__file__).with_name("faults.yaml")


@dataclass(frozen=True)
class Effect:
    """Drive ``series`` (an fnmatch glob allowed) towards ``value`` from ``delay_s`` after
    the fault reaches the component, with time constant ``tau_s``. ``relative``: ``value``
    multiplies the healthy level instead (complaints x3.2)."""

    series: str
    value: float
    delay_s: float = 0.0
    tau_s: float = 1.0
    relative: bool = False


@dataclass(frozen=True)
class Dependency:
    """``dependant`` degrades ``delay_s`` after ``upstream`` does; ``carry`` is the share
    of the upstream's strength passed on to the dependant's own dependants."""

    upstream: str
    dependant: str
    delay_s: float
    effects: tuple[Effect, ...]
    carry: float = 1.0


@dataclass(frozen=True)
class FaultSpec:
    name: str
    component: str
    description: str
    paper: str  # the figure the fault reproduces
    effects: tuple[Effect, ...]  # on the component's own series
    spread: float = 1.0  # strength handed to the dependants (0: stays local)
    propagates_after_s: float = 0.0  # when the failure reaches the component's outputs


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _EffectIn(_Strict):
    series: str = Field(min_length=1)
    value: float
    delay_s: float = Field(0.0, ge=0)
    tau_s: float = Field(1.0, gt=0)
    relative: bool = False

    def effect(self) -> Effect:
        return Effect(self.series, self.value, self.delay_s, self.tau_s, self.relative)


class _DependencyIn(_Strict):
    upstream: str = Field(min_length=1)
    dependant: str = Field(min_length=1)
    delay_s: float = Field(ge=0)
    carry: float = Field(1.0, ge=0, le=1)
    effects: tuple[_EffectIn, ...] = Field(min_length=1)


class _FaultIn(_Strict):
    component: str = Field(min_length=1)
    description: str = Field(min_length=1)
    paper: str
    effects: tuple[_EffectIn, ...] = Field(min_length=1)
    spread: float = Field(1.0, ge=0)
    propagates_after_s: float = Field(0.0, ge=0)


class _FaultsFile(_Strict):
    host_component: dict[str, str]
    dependencies: tuple[_DependencyIn, ...]
    faults: dict[str, _FaultIn] = Field(min_length=1)


def load_faults(
    path: Path = FAULTS_FILE,
) -> tuple[dict[str, str], tuple[Dependency, ...], dict[str, FaultSpec]]:
    """(host prefix -> component, dependencies, faults by name) from a faults file;
    ValueError names the file and every problem."""
    try:
        raw: Any = yaml.safe_load(path.read_text())
        data = _FaultsFile.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the twin's faults: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{path}: {problems}") from exc
    dependencies = tuple(
        Dependency(
            d.upstream, d.dependant, d.delay_s, tuple(e.effect() for e in d.effects), d.carry
        )
        for d in data.dependencies
    )
    faults = {
        name: FaultSpec(
            name,
            f.component,
            f.description,
            f.paper,
            tuple(e.effect() for e in f.effects),
            f.spread,
            f.propagates_after_s,
        )
        for name, f in data.faults.items()
    }
    return dict(data.host_component), dependencies, faults


HOST_COMPONENT, DEPENDENCIES, FAULTS = load_faults()


def component_of(series: str, subsystem: str) -> str:
    """The dependency-graph node a series belongs to (its subsystem; hosts by role)."""
    for prefix, component in HOST_COMPONENT.items():
        if series.startswith(prefix):
            return component
    return subsystem


def reach(component: str, spread: float) -> Iterator[tuple[str, float, float]]:
    """(component, delay from the fault reaching ``component``, strength), the earliest
    path first; each dependant is reached once, along its earliest path."""
    best: dict[str, float] = {}
    queue: list[tuple[float, str, float]] = [(0.0, component, spread)]
    while queue:
        delay, node, strength = heapq.heappop(queue)
        if node in best:
            continue
        best[node] = delay
        yield node, delay, strength
        if strength <= 0:
            continue
        for dep in DEPENDENCIES:
            if dep.upstream == node and dep.dependant not in best:
                heapq.heappush(queue, (delay + dep.delay_s, dep.dependant, strength * dep.carry))


def edges_into(dependant: str, reached: dict[str, float]) -> Iterator[Dependency]:
    """Edges from an already reached component into ``dependant`` (several may apply)."""
    for dep in DEPENDENCIES:
        if dep.dependant == dependant and dep.upstream in reached:
            yield dep
