"""Rule files (YAML) -> validated RuleSpec models -> one durable_rules ruleset.

A rule names a fault and the series that must be abnormal together on one target::

    rules:
      - id: cache-saturation-penetration
        fault: cache_saturation
        component: cache
        confidence: 0.9
        summary: Cache cluster saturated ...
        all: [{series: cache_utilization_pct}, {series: cache_hit_ratio, below: 0.6}]
        none: [{series: db_io_wait_pct}]

The engine sees one *fact* per abnormal series (``sid`` = target, so rules never mix
targets); a rule fires when its ``all`` facts are present and no ``none`` fact is.
A bad file is refused whole with file:line and the reason.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from durable.engine import Host, MessageNotHandledException, MessageObservedException
from durable.lang import c, m, none, when_all
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loop.errors import RuleFileError, validation_reasons
from rules import RULES_DIR
from rules.catalog import Catalog
from rules.source import entry_name, line_of, read_yaml_list

CATALOG_FILE = "metrics.yaml"


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    series: str
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Condition:
        if self.above is not None and self.below is not None:
            raise ValueError("give at most one of above/below")
        return self


class RuleSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    fault: str
    component: str
    confidence: float = Field(0.8, gt=0, le=1)
    summary: str
    all_of: tuple[Condition, ...] = Field(alias="all", min_length=1)
    none_of: tuple[Condition, ...] = Field((), alias="none")
    source: str = ""

    @property
    def series(self) -> tuple[str, ...]:
        return tuple(cond.series for cond in self.all_of)


class AbnormalFact(BaseModel):
    """What the engine is told: one series on one target is abnormal (or no longer)."""

    model_config = ConfigDict(frozen=True)

    target: str
    series: str
    value: float
    threshold: float
    direction: str
    since: float

    def as_fact(self) -> dict[str, Any]:
        return {"sid": self.target, "id": f"{self.target}/{self.series}", **self.model_dump()}


def load_rule_file(path: Path, catalog: Catalog) -> list[RuleSpec]:
    text, entries = read_yaml_list(path, "rules")
    specs = []
    for index, entry in enumerate(entries):
        rule_id = entry_name(entry, "id", index)
        line = line_of(text, f"id: {rule_id}")
        if not isinstance(entry, dict):
            raise RuleFileError(str(path), line, f"rule {rule_id}: must be a mapping")
        try:
            spec = RuleSpec.model_validate({**entry, "source": f"{path}:{line}"})
        except ValidationError as exc:
            reason = validation_reasons(exc)
            raise RuleFileError(str(path), line, f"rule {rule_id}: {reason}") from exc
        unknown = [
            cond.series for cond in (*spec.all_of, *spec.none_of) if cond.series not in catalog
        ]
        if unknown:
            raise RuleFileError(
                str(path), line, f"rule {rule_id}: unknown series {', '.join(unknown)}"
            )
        specs.append(spec)
    return specs


def load_rules(catalog: Catalog, rules_dir: Path = RULES_DIR) -> list[RuleSpec]:
    """Every rule file in ``rules_dir`` (the catalog excluded); ids must be unique."""
    specs: list[RuleSpec] = []
    seen: dict[str, str] = {}
    for path in sorted(rules_dir.glob("*.yaml")):
        if path.name == CATALOG_FILE:
            continue
        for spec in load_rule_file(path, catalog):
            if spec.id in seen:
                raise RuleFileError(
                    str(path), None, f"rule id {spec.id} already defined at {seen[spec.id]}"
                )
            seen[spec.id] = spec.source
            specs.append(spec)
    return specs


def _condition_expr(cond: Condition) -> Any:
    expr = m.series == cond.series
    if cond.above is not None:
        expr = expr & (m.value > cond.above)
    if cond.below is not None:
        expr = expr & (m.value < cond.below)
    return expr


Fired = Callable[[RuleSpec, list[AbnormalFact]], None]

_ruleset_counter = itertools.count()


class CompiledRules:
    """A private durable_rules host holding one ruleset compiled from ``specs``.

    ``on_fire(rule, facts)`` is called (possibly on durable_rules' dispatch thread) each
    time a rule's conditions become true for a target.
    """

    def __init__(self, specs: Iterable[RuleSpec], on_fire: Fired) -> None:
        self.specs = tuple(specs)
        self.name = f"mendloop-{next(_ruleset_counter)}"
        self._lock = threading.Lock()
        definition: dict[str, Any] = {}
        for spec in self.specs:
            aliases = [f"f{i}" for i in range(len(spec.all_of))]
            conditions = [
                getattr(c, alias) << _condition_expr(cond)
                for alias, cond in zip(aliases, spec.all_of, strict=True)
            ]
            conditions += [none(_condition_expr(cond)) for cond in spec.none_of]
            rule = when_all(*conditions)
            rule.func = [self._action(spec, aliases, on_fire)]
            definition[spec.id] = rule.define()
        self._host = Host({self.name: definition}) if definition else None

    @staticmethod
    def _action(spec: RuleSpec, aliases: list[str], on_fire: Fired) -> Callable[[Any], None]:
        def action(closure: Any) -> None:
            facts = [
                AbnormalFact.model_validate(
                    {k: getattr(closure, alias)[k] for k in AbnormalFact.model_fields}
                )
                for alias in aliases
            ]
            on_fire(spec, facts)

        return action

    def _call(self, method: str, fact: AbnormalFact) -> None:
        if self._host is None:
            return
        # a fact no rule needs (yet) is expected, not an error
        quiet = contextlib.suppress(MessageNotHandledException, MessageObservedException)
        with self._lock, quiet:
            getattr(self._host, method)(self.name, fact.as_fact())

    def assert_abnormal(self, fact: AbnormalFact) -> None:
        self._call("assert_fact", fact)

    def retract_abnormal(self, fact: AbnormalFact) -> None:
        self._call("retract_fact", fact)

    def close(self) -> None:
        """Stop durable_rules' background dispatch timers for this host."""
        if self._host is None:
            return
        for timer_name in ("_d_timer", "_t_timer"):
            timer = getattr(self._host, timer_name, None)
            if timer is not None:
                timer.cancel()
