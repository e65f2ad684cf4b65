"""Rule files (YAML, see docs/RULES.md) -> RuleSpecs -> one durable_rules ruleset.

    specs = load_rules(catalog)                           # RuleFileError on the first bad file
    engine = CompiledRules(specs, on_fire)                # a private durable_rules host
    engine.assert_abnormal(fact); engine.retract_abnormal(fact)

The engine never sees samples, only *facts*: "signal K is true on target T since S"
(``sid`` = target, so a rule never mixes targets). A signal is what one condition watches
(a threshold held for a duration, a rate of change, an absence of data); the analyzer
(loop/analyze.py) decides when a signal turns true or false and asserts/retracts its fact.

How each rule form compiles (``m.key`` is the signal, ``~`` marks an *occurrence*: a
signal's onset kept for the rule's window even after the signal recovers):

    all: [A, B]                 when_all(c.f0 << key==A, c.f1 << key==B, none(...))
    all: [A, B], within: W      when_all(c.f0 << key==A~,
                                         c.f1 << key==B~ & |since - f0.since| <= W)
    sequence: [A, B], within: T when_all(c.f0 << key==A~,
                                         c.f1 << key==B~ & f0.since <= since <= f0.since + T)
    none: [C]                   none(key==C)           (C abnormal now vetoes the rule)
    targets: [pm-site-*]        & target.matches('pm[-]site[-].*')   on the first condition

Time is the samples' time, never the wall clock (so a replay judges exactly like the
daemon): no durable_rules timers; windows are ``since`` arithmetic inside the engine.
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
from pydantic import BaseModel, ConfigDict

from kernel.errors import RuleFileError
from rules import RULES_DIR
from rules.catalog import Catalog
from rules.loader import check_file, check_paths, load_faults
from rules.spec import Condition, RuleSpec

__all__ = [
    "OCCURRENCE",
    "AbnormalFact",
    "CompiledRules",
    "Condition",
    "RuleSpec",
    "faults_for",
    "load_rule_file",
    "load_rules",
]

OCCURRENCE = "~"


class AbnormalFact(BaseModel):
    """What the engine is told: one signal on one target is true (or no longer).

    ``key`` names the signal (the series itself for a plain catalog threshold); ``kind`` is
    threshold/rate/absent; ``value``/``threshold``/``direction`` are what made it true.
    """

    model_config = ConfigDict(frozen=True)

    target: str
    series: str
    value: float
    threshold: float
    direction: str
    since: float
    key: str = ""
    kind: str = "threshold"

    @property
    def signal(self) -> str:
        return self.key or self.series

    def as_fact(self) -> dict[str, Any]:
        data = self.model_dump()
        data["key"] = self.signal
        return {"sid": self.target, "id": f"{self.target}/{self.signal}", **data}

    def occurrence(self) -> AbnormalFact:
        """The onset of this signal, kept for windows even after the signal recovers."""
        return self.model_copy(update={"key": self.signal + OCCURRENCE})


def faults_for(rules_dir: Path | None = None) -> dict[str, str]:
    """The faults a rule may name (fault -> component) in the power-marketing pack's
    domain; ``rules_dir`` is accepted for old callers. A site uses its own domain."""
    return load_faults()


def load_rule_file(
    path: Path, catalog: Catalog, faults: dict[str, str] | None = None
) -> list[RuleSpec]:
    """One file's rules; RuleFileError (the first error) if anything in it is wrong."""
    specs, errors = check_file(path, catalog, faults or faults_for(path.parent))
    if errors:
        raise errors[0]
    return specs


def load_rules(
    catalog: Catalog, rules_dir: Path = RULES_DIR, faults: dict[str, str] | None = None
) -> list[RuleSpec]:
    """Every rule file in ``rules_dir`` (the catalog excluded); ids unique; ``faults``
    (default: the power-marketing pack's) are those a rule may name.
    Raises the first RuleFileError; ``rules.loader.check_paths`` returns them all."""
    specs, errors = check_paths([rules_dir], catalog, faults or faults_for(rules_dir))
    if errors:
        raise errors[0]
    return specs


# -- compiling to durable_rules --------------------------------------------------------------


def _glob_regex(pattern: str) -> str:
    """A target glob in durable_rules' regex dialect (full match; `\\.` is not supported,
    a one-character class is)."""
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char.isalnum():
            out.append(char)
        else:
            out.append(f"[{char}]")
    return "".join(out)


def _scope(patterns: tuple[str, ...]) -> Any:
    expr = None
    for pattern in patterns:
        one = m.target.matches(_glob_regex(pattern))
        expr = one if expr is None else expr | one
    return expr


def _conditions(spec: RuleSpec) -> list[Any]:
    conds = spec.conditions
    suffix = OCCURRENCE if spec.windowed else ""
    window = spec.within or 0.0
    out = []
    for index, cond in enumerate(conds):
        expr = m.key == cond.key + suffix
        if index == 0 and spec.targets:
            expr = expr & _scope(spec.targets)
        if index > 0 and spec.sequence:
            # onset after the previous step and within T of the first step's onset
            expr = expr & (m.since >= getattr(c, f"f{index - 1}").since)
            expr = expr & (m.since <= c.f0.since + window)
        elif index > 0 and spec.windowed:
            for earlier in range(index):  # every pair of onsets within W of each other
                ref = getattr(c, f"f{earlier}").since
                expr = expr & (m.since <= ref + window) & (m.since >= ref - window)
        out.append(getattr(c, f"f{index}") << expr)
    out += [none(m.key == cond.key) for cond in spec.none_of]
    return out


Fired = Callable[[RuleSpec, list[AbnormalFact]], None]

_ruleset_counter = itertools.count()


class CompiledRules:
    """A private durable_rules host holding one ruleset compiled from ``specs``.

    ``on_fire(rule, facts)`` is called synchronously from ``assert_abnormal`` each time a
    rule's conditions become true for a target (facts in the rule's condition order).
    """

    def __init__(self, specs: Iterable[RuleSpec], on_fire: Fired) -> None:
        self.specs = tuple(specs)
        self.name = f"mendloop-{next(_ruleset_counter)}"
        self.on_fire = on_fire  # replaceable: a hot reload re-asserts into it first
        self._lock = threading.Lock()
        definition: dict[str, Any] = {}
        for spec in self.specs:
            rule = when_all(*_conditions(spec))
            rule.func = [self._action(spec, len(spec.conditions))]
            definition[spec.id] = rule.define()
        self._host = Host({self.name: definition}) if definition else None

    def _action(self, spec: RuleSpec, count: int) -> Callable[[Any], None]:
        def action(closure: Any) -> None:
            facts = []
            for index in range(count):
                raw = getattr(closure, f"f{index}")
                fact = AbnormalFact.model_validate({k: raw[k] for k in AbnormalFact.model_fields})
                facts.append(fact.model_copy(update={"key": fact.key.removesuffix(OCCURRENCE)}))
            self.on_fire(spec, facts)

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


def check_error_lines(errors: Iterable[RuleFileError]) -> list[str]:
    """One line per error: ``file:line: reason``."""
    return [str(error) for error in errors]
