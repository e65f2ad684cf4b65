"""The rule language as typed, frozen models (what a rule file *means*, not how it runs).

    Condition(series="cache_hit_ratio")                         catalog crit, catalog duration
    Condition(series="db_query_latency_ms", above=500, for_s=10) own threshold, held 10 s
    Condition(series="cs_complaints_per_h", rises_by=20, per=60)  rate of change
    Condition(series="edge_sampling_rate_pts_per_s", absent_for=30)  no sample for 30 s

Durations are seconds or strings such as ``500ms``, ``10s``, ``5m``, ``2h``, ``1d``. Every
condition has a ``key``: the identity of the *signal* it watches. Two rules that watch the
same thing share one fact in the engine, and a hot reload keeps the state of every signal
whose key did not change.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
TARGET_PATTERN = re.compile(r"^[A-Za-z0-9_.:*?-]+$")


def parse_duration(raw: Any) -> float:
    """``10s`` -> 10.0; a bare number is seconds. Refuses zero, negatives and junk."""
    if isinstance(raw, bool):
        raise ValueError(f"unparsable duration {raw!r} (use e.g. 30s, 5m, 2h)")
    if isinstance(raw, int | float):
        seconds = float(raw)
    else:
        match = _DURATION.match(str(raw))
        if match is None:
            raise ValueError(f"unparsable duration {raw!r} (use e.g. 30s, 5m, 2h)")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {raw!r} must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def fmt_duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


class Severity(StrEnum):
    critical = "critical"
    major = "major"
    minor = "minor"
    warning = "warning"


class ConditionKind(StrEnum):
    threshold = "threshold"
    rate = "rate"
    absent = "absent"


OPERATORS = ("above", "below", "for", "rises_by", "falls_by", "per", "counter", "absent_for")


class Condition(BaseModel):
    """One thing that must be true of one series on one target."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    series: str
    above: float | None = None
    below: float | None = None
    for_s: Duration | None = Field(None, alias="for")
    rises_by: float | None = Field(None, gt=0)
    falls_by: float | None = Field(None, gt=0)
    per: Duration | None = None
    counter: bool = False
    absent_for: Duration | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        threshold = self.above is not None or self.below is not None or self.for_s is not None
        rate = self.rises_by is not None or self.falls_by is not None
        kinds = [name for name, used in (("threshold", threshold), ("rate", rate)) if used]
        if self.absent_for is not None:
            kinds.append("absent_for")
        if len(kinds) > 1:
            raise ValueError(f"mixes {' and '.join(kinds)}: one condition, one operator")
        if self.above is not None and self.below is not None:
            raise ValueError("give at most one of above/below")
        if self.rises_by is not None and self.falls_by is not None:
            raise ValueError("give at most one of rises_by/falls_by")
        if (self.per is not None or self.counter) and not rate:
            raise ValueError("per/counter only go with rises_by or falls_by")
        return self

    @property
    def kind(self) -> ConditionKind:
        if self.rises_by is not None or self.falls_by is not None:
            return ConditionKind.rate
        if self.absent_for is not None:
            return ConditionKind.absent
        return ConditionKind.threshold

    @property
    def rate_window_s(self) -> float:
        return self.per if self.per is not None else 60.0

    @property
    def key(self) -> str:
        """The signal's identity; a plain catalog threshold is just the series name."""
        if self.kind == ConditionKind.rate:
            sign, amount = (
                (">", self.rises_by) if self.rises_by is not None else ("<", self.falls_by)
            )
            counter = ":counter" if self.counter else ""
            return f"{self.series}:delta{sign}{amount:g}/{self.rate_window_s:g}s{counter}"
        if self.kind == ConditionKind.absent:
            return f"{self.series}:absent{self.absent_for:g}s"
        key = self.series
        if self.above is not None:
            key += f">{self.above:g}"
        if self.below is not None:
            key += f"<{self.below:g}"
        if self.for_s is not None:
            key += f"@{self.for_s:g}s"
        return key

    def describe(self) -> str:
        if self.kind == ConditionKind.rate:
            verb = "rises" if self.rises_by is not None else "falls"
            amount = self.rises_by if self.rises_by is not None else self.falls_by
            return f"{self.series} {verb} by > {amount:g} in {fmt_duration(self.rate_window_s)}"
        if self.kind == ConditionKind.absent:
            return f"{self.series} has no sample for {fmt_duration(self.absent_for or 0)}"
        bound = (
            f"above {self.above:g}"
            if self.above is not None
            else f"below {self.below:g}"
            if self.below is not None
            else "past its crit threshold"
        )
        held = f" for {fmt_duration(self.for_s)}" if self.for_s is not None else ""
        return f"{self.series} {bound}{held}"


class RuleSpec(BaseModel):
    """One rule: conditions on one target (``all``/``none``, or a ``sequence``), the
    fault(s) it points to, and how bad it is."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    faults: tuple[str, ...] = Field(min_length=1)
    component: str = ""
    severity: Severity = Severity.major
    confidence: float = Field(0.8, gt=0, le=1)
    summary: str
    targets: tuple[str, ...] = ()
    all_of: tuple[Condition, ...] = Field((), alias="all")
    sequence: tuple[Condition, ...] = ()
    none_of: tuple[Condition, ...] = Field((), alias="none")
    within: Duration | None = None
    source: str = ""

    @model_validator(mode="before")
    @classmethod
    def _fault_alias(cls, data: Any) -> Any:
        """``fault: x`` is shorthand for ``faults: [x]``."""
        if isinstance(data, dict) and "fault" in data:
            data = dict(data)
            fault = data.pop("fault")
            if "faults" in data:
                raise ValueError("give fault or faults, not both")
            data["faults"] = [fault] if isinstance(fault, str) else fault
        return data

    @model_validator(mode="after")
    def _shape(self) -> RuleSpec:
        if bool(self.all_of) == bool(self.sequence):
            raise ValueError("give exactly one of all (conditions together) or sequence")
        if self.sequence and self.within is None:
            raise ValueError("a sequence needs `within` (the time from first to last step)")
        if self.sequence and len(self.sequence) < 2:
            raise ValueError("a sequence needs at least two steps")
        if self.all_of and self.within is not None and len(self.all_of) < 2:
            raise ValueError("`within` needs at least two conditions under all")
        for pattern in self.targets:
            if not TARGET_PATTERN.match(pattern):
                raise ValueError(f"target pattern {pattern!r}: use letters, digits, _.:- and * ?")
        return self

    @property
    def fault(self) -> str:
        """The first (main) fault the rule points to."""
        return self.faults[0]

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """The conditions that must hold, in order (``all`` or the ``sequence`` steps)."""
        return self.sequence or self.all_of

    @property
    def windowed(self) -> bool:
        """Judged on onsets within a window (occurrences), not on what is abnormal now."""
        return self.within is not None

    @property
    def series(self) -> tuple[str, ...]:
        return tuple(cond.series for cond in self.conditions)

    def semantics(self) -> dict[str, Any]:
        """Everything that decides when the rule fires and what it says (not where it is
        written): a reload that leaves this alone changes nothing for the rule."""
        return self.model_dump(exclude={"source"})
