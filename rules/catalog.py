"""The metric catalog: every series mendloop knows, its unit, thresholds and SQI role.

>>> catalog = load_catalog()
>>> catalog["cache_hit_ratio"].is_breach(0.5, level="crit")
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loop.errors import RuleFileError
from rules import RULES_DIR

Direction = Literal["high", "low"]


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


class Catalog(Mapping[str, MetricSpec]):
    def __init__(self, specs: list[MetricSpec]) -> None:
        self._specs = {s.name: s for s in specs}

    def __getitem__(self, name: str) -> MetricSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def load_catalog(path: Path = RULES_DIR / "metrics.yaml") -> Catalog:
    """Load and validate the catalog; a bad entry is refused with file:line and reason."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except OSError as exc:
        raise RuleFileError(str(path), None, f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleFileError(str(path), mark.line + 1 if mark else None, str(exc)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), list):
        raise RuleFileError(str(path), 1, "expected a top-level `metrics:` list")
    specs: list[MetricSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(data["metrics"]):
        name = entry.get("name", f"#{index}") if isinstance(entry, dict) else f"#{index}"
        line = _line_of(text, f"name: {name}")
        try:
            spec = MetricSpec.model_validate(entry)
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise RuleFileError(str(path), line, f"metric {name}: {reasons}") from exc
        if spec.name in seen:
            raise RuleFileError(str(path), line, f"metric {spec.name} is defined twice")
        seen.add(spec.name)
        specs.append(spec)
    return Catalog(specs)
