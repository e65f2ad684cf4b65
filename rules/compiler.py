"""Rule files (YAML, see docs/RULES.md) -> RuleSpecs -> one durable_rules ruleset.

    specs = load_rules(catalog)                           # RuleFileError on the first bad file
    engine = CompiledRules(specs, on_fire)                # a private durable_rules host
    engine.apply([(fact, True), (other, False)])   # one batch, judged as a whole

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
from dataclasses import dataclass
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
    "Firing",
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


@dataclass(frozen=True)
class Firing:
    """A rule that holds on one target, with the facts that made it (in condition order,
    as the engine holds them: an occurrence keeps its ``~`` key)."""

    rule: RuleSpec
    matched: tuple[AbnormalFact, ...]

    @property
    def target(self) -> str:
        return self.matched[0].target

    @property
    def facts(self) -> list[AbnormalFact]:
        """The facts as signals (occurrences named by their signal), for the finding."""
        return [
            f.model_copy(update={"key": f.signal.removesuffix(OCCURRENCE)}) for f in self.matched
        ]


Fired = Callable[[Firing], None]

_ruleset_counter = itertools.count()


def _as_held(fact: AbnormalFact) -> AbnormalFact:
    """The fact as the engine holds (and hands back) it: its key is its signal."""
    return fact if fact.key else fact.model_copy(update={"key": fact.signal})


class CompiledRules:
    """A private durable_rules host holding one ruleset compiled from ``specs``.

    ``apply(changes)`` asserts and retracts one batch of facts and then calls
    ``on_fire(firing)`` for each rule that became true on the way *and still holds once the
    whole batch is in* (its facts still asserted, none of its vetoes true). durable_rules
    fires a rule the moment its conditions hold and a veto (``none``) asserted a moment
    later does not take that back, so facts asserted one by one would judge a batch by
    the order of its facts (a veto retracted before the trigger it guards fired the rule
    in between); the check at the end makes the order inside a batch irrelevant.
    """

    def __init__(self, specs: Iterable[RuleSpec], on_fire: Fired) -> None:
        self.specs = tuple(specs)
        self.name = f"mendloop-{next(_ruleset_counter)}"
        self.on_fire = on_fire  # replaceable: a hot reload re-asserts into it first
        self._lock = threading.Lock()
        self._held: dict[str, AbnormalFact] = {}  # fact id -> the fact: the engine's facts
        self._vetoes = {spec.id: tuple(c.key for c in spec.none_of) for spec in self.specs}
        self._fired: list[Firing] = []  # during a batch: firings to judge at its end
        definition: dict[str, Any] = {}
        for spec in self.specs:
            rule = when_all(*_conditions(spec))
            rule.func = [self._action(spec, len(spec.conditions))]
            definition[spec.id] = rule.define()
        self._host = Host({self.name: definition}) if definition else None

    def _action(self, spec: RuleSpec, count: int) -> Callable[[Any], None]:
        def action(closure: Any) -> None:
            matched = []
            for index in range(count):
                raw = getattr(closure, f"f{index}")
                matched.append(
                    AbnormalFact.model_validate({k: raw[k] for k in AbnormalFact.model_fields})
                )
            self._fired.append(Firing(spec, tuple(matched)))

        return action

    def holds(self, firing: Firing) -> bool:
        """Whether ``firing`` is still true: each of its facts asserted as it was, and no
        veto of its rule true on its target."""
        held = self._held
        if any(held.get(f"{f.target}/{f.signal}") != f for f in firing.matched):
            return False
        target = firing.target
        return not any(f"{target}/{key}" in held for key in self._vetoes.get(firing.rule.id, ()))

    def apply(self, changes: Iterable[tuple[AbnormalFact, bool]]) -> list[Firing]:
        """Assert (``True``) or retract (``False``) each fact of one batch, in order; then
        ``on_fire`` each rule that holds at the end (once per rule and facts). Returns
        those firings."""
        if self._host is None:
            return []
        # a fact no rule needs (yet) is expected, not an error
        quiet = contextlib.suppress(MessageNotHandledException, MessageObservedException)
        with self._lock:
            for fact, abnormal in changes:
                data = fact.as_fact()
                if abnormal:
                    self._held[data["id"]] = _as_held(fact)
                    with quiet:
                        self._host.assert_fact(self.name, data)
                elif self._held.pop(data["id"], None) is not None:
                    with quiet:
                        self._host.retract_fact(self.name, data)
            fired, self._fired = self._fired, []
            kept = list({(f.rule.id, f.matched): f for f in fired if self.holds(f)}.values())
        for firing in kept:
            self.on_fire(firing)
        return kept

    def assert_abnormal(self, fact: AbnormalFact) -> None:
        self.apply([(fact, True)])

    def retract_abnormal(self, fact: AbnormalFact) -> None:
        self.apply([(fact, False)])

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
