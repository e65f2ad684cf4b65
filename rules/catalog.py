"""The metric catalog: every series mendloop knows, its unit, thresholds and SQI role.

>>> catalog = load_catalog()
>>> catalog["cache_hit_ratio"].is_breach(0.5, level="crit")
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from kernel.config import TWIN_PACK
from kernel.errors import RuleFileError, validation_reasons
from kernel.ids import MAX_ID_LEN
from rules.derive import Derivation, parse_derivation
from rules.selectors import LABEL_NAME, Matcher, SeriesIndex, parse_matchers
from rules.source import entry_name, line_of, read_yaml_list

Direction = Literal["high", "low"]
# host series are named host_<role>_<nn>_...: the component each role serves
HOST_ROLES = {"db": "database", "cache": "cache", "esb": "esb", "app": "api"}


class MetricSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=MAX_ID_LEN)  # as a target's
    unit: str
    subsystem: str
    layer: Literal["system", "device", "power_quality", "customer_service", "host"]
    bad: Direction
    warn: float
    crit: float
    duration_s: float = Field(ge=0)
    sqi_role: Literal["response_time", "success_rate", "utilisation", "error_rate", "none"]
    description: str
    # which incoming series this entry takes (rules/selectors.py); all optional
    metric: str | None = Field(default=None, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")
    match: dict[str, str | dict[str, str]] | None = None
    target_label: str | None = Field(default=None, max_length=128)
    # a derived series: PromQL the pulled Prometheus evaluates, or a push expression;
    # expr may go with metric: the pull evaluates expr, push takes the series a Prometheus
    # recording rule of the same expression records under metric (docs/INTAKE.md)
    expr: str | None = Field(default=None, min_length=1, max_length=2000)
    derive: str | None = Field(default=None, min_length=1, max_length=200)
    _matchers: tuple[Matcher, ...] = PrivateAttr(default=())
    _derivation: Derivation | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _warn_before_crit(self) -> MetricSpec:
        if (self.bad == "high" and self.warn > self.crit) or (
            self.bad == "low" and self.warn < self.crit
        ):
            raise ValueError(f"warn {self.warn} must come before crit {self.crit} ({self.bad})")
        if self.target_label is not None and not LABEL_NAME.fullmatch(self.target_label):
            raise ValueError(f"target_label {self.target_label!r} is not a label name")
        if self.derive is not None and (self.expr is not None or self.metric is not None):
            raise ValueError("give at most one of expr and derive; derive takes no metric")
        if self.derive is not None and (self.match or self.target_label):
            raise ValueError("a derived series (derive) takes no match or target_label")
        self._matchers = parse_matchers(self.match)
        self._derivation = parse_derivation(self.derive) if self.derive else None
        return self

    @property
    def source_metric(self) -> str:
        """The metric name incoming samples carry for this entry (default: its own)."""
        return self.metric or self.name

    @property
    def matchers(self) -> tuple[Matcher, ...]:
        return self._matchers

    @property
    def derivation(self) -> Derivation | None:
        """A push-side derived series (rules/derive.py), computed by the monitor."""
        return self._derivation

    def is_breach(self, value: float, level: Literal["warn", "crit"] = "crit") -> bool:
        limit = self.crit if level == "crit" else self.warn
        return value > limit if self.bad == "high" else value < limit

    def is_healthy(self, value: float) -> bool:
        """Within the warn threshold: the bar a repaired metric must clear."""
        return not self.is_breach(value, "warn")

    @property
    def component(self) -> str:
        """The component (of the site's domain.yaml) the series tells about: its
        subsystem, except host series, which belong to what the host serves
        (``host_db_01_cpu_util_pct`` -> database), as in the RCA topology."""
        if self.subsystem != "host":
            return self.subsystem
        role = self.name.split("_")[1] if self.name.count("_") >= 2 else ""
        return HOST_ROLES.get(role, "host")


class Catalog(Mapping[str, MetricSpec]):
    def __init__(self, specs: list[MetricSpec]) -> None:
        self._specs = {s.name: s for s in specs}
        self.index = SeriesIndex(s for s in specs if s.derive is None)
        self.derived = tuple(s for s in specs if s.derivation is not None)

    def __getitem__(self, name: str) -> MetricSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def load_catalog(path: Path = TWIN_PACK / "metrics.yaml") -> Catalog:
    """Load and validate the catalog; a bad entry is refused with file:line and reason."""
    text, entries = read_yaml_list(path, "metrics")
    specs: list[MetricSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name = entry_name(entry, "name", index)
        line = line_of(text, f"name: {name}")
        try:
            spec = MetricSpec.model_validate(entry)
        except ValidationError as exc:
            reasons = validation_reasons(exc)
            raise RuleFileError(str(path), line, f"metric {name}: {reasons}") from exc
        if spec.name in seen:
            raise RuleFileError(str(path), line, f"metric {spec.name} is defined twice")
        seen.add(spec.name)
        specs.append(spec)
    by_name = {s.name: s for s in specs}
    for spec in specs:
        if spec.derivation is None:
            continue
        for operand in spec.derivation.operands:
            other = by_name.get(operand)
            if other is None or other.derivation is not None:
                why = "not in the catalog" if other is None else "derived itself"
                line = line_of(text, f"name: {spec.name}")
                raise RuleFileError(str(path), line, f"metric {spec.name}: derive: {operand} {why}")
    return Catalog(specs)
