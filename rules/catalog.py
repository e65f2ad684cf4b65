"""The metric catalog: every series mendloop knows, its unit, thresholds and SQI role.

>>> catalog = load_catalog()
>>> catalog["cache_hit_ratio"].is_breach(0.5, level="crit")
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kernel.errors import RuleFileError, validation_reasons
from rules import RULES_DIR
from rules.source import entry_name, line_of, read_yaml_list

Direction = Literal["high", "low"]
# host series are named host_<role>_<nn>_...: the component each role serves
HOST_ROLES = {"db": "database", "cache": "cache", "esb": "esb", "app": "api"}


class MetricSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str
    subsystem: str
    layer: Literal["system", "device", "power_quality", "customer_service", "host"]
    bad: Direction
    warn: float
    crit: float
    duration_s: float = Field(ge=0)
    sqi_role: Literal["response_time", "success_rate", "utilisation", "error_rate", "none"]
    description: str

    @model_validator(mode="after")
    def _warn_before_crit(self) -> MetricSpec:
        if (self.bad == "high" and self.warn > self.crit) or (
            self.bad == "low" and self.warn < self.crit
        ):
            raise ValueError(f"warn {self.warn} must come before crit {self.crit} ({self.bad})")
        return self

    def is_breach(self, value: float, level: Literal["warn", "crit"] = "crit") -> bool:
        limit = self.crit if level == "crit" else self.warn
        return value > limit if self.bad == "high" else value < limit

    def is_healthy(self, value: float) -> bool:
        """Within the warn threshold: the bar a repaired metric must clear."""
        return not self.is_breach(value, "warn")

    @property
    def component(self) -> str:
        """The platform component (kernel/domain.yaml) the series tells about: its
        subsystem, except host series, which belong to what the host serves
        (``host_db_01_cpu_util_pct`` -> database), as in the RCA topology."""
        if self.subsystem != "host":
            return self.subsystem
        role = self.name.split("_")[1] if self.name.count("_") >= 2 else ""
        return HOST_ROLES.get(role, "host")


class Catalog(Mapping[str, MetricSpec]):
    def __init__(self, specs: list[MetricSpec]) -> None:
        self._specs = {s.name: s for s in specs}

    def __getitem__(self, name: str) -> MetricSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def load_catalog(path: Path = RULES_DIR / "metrics.yaml") -> Catalog:
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
    return Catalog(specs)
