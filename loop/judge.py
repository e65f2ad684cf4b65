"""The rules side of analysis: the signals' changes in, the rule findings out.

    judge = Judge(rules, last_seen=tracker.last_seen, time_of=time_of, wait_s=60.0)
    findings = judge.apply(changes)        # one batch of Changes -> durable_rules -> findings
    sweep_targets(due, ..., judge.occurrences, judge.keep)    # windows' onsets expire
    fresh = Judge(new_rules, ...).take_over(judge, live, unchanged)   # hot reload

A batch's changes go to the engine as one batch (rules/compiler.py ``CompiledRules.apply``:
a rule fires only if it holds once the whole batch is in); a windowed signal's onset is
also asserted as an *occurrence* and kept until its window passed; what fires waits until
every series its rule reads has reported that moment (loop/gate.py) and then becomes a
finding. Not thread-safe on its own: the Analyzer calls it under its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kernel.models import Finding
from loop.findings import finding_from_rule
from loop.gate import LastSeen, TickGate
from rules.compiler import AbnormalFact, CompiledRules, Firing, RuleSpec
from rules.signals import Change


def windows(rules: Iterable[RuleSpec]) -> dict[str, float]:
    """Signal key -> how long its onsets must be remembered (the longest window using it)."""
    keep: dict[str, float] = {}
    for rule in rules:
        if rule.within is not None:
            for cond in rule.conditions:
                keep[cond.key] = max(keep.get(cond.key, 0.0), rule.within)
    return keep


class Judge:
    """One compiled rule set with what it needs between batches: the onsets windows still
    remember (``occurrences``) and the firings waiting for their moment (``gate``)."""

    def __init__(
        self,
        rules: Iterable[RuleSpec],
        last_seen: LastSeen,
        time_of: Callable[[str], float],
        wait_s: float = 60.0,
    ) -> None:
        self.rules = tuple(rules)
        self.veto = {c.key for r in self.rules for c in r.none_of}
        self.keep = windows(self.rules)
        self.occurrences: dict[tuple[str, str], AbnormalFact] = {}
        self.gate = TickGate(wait_s=wait_s)
        self._last_seen = last_seen
        self._time_of = time_of
        self.engine = CompiledRules(self.rules, self._offer)  # the slow part: compiling

    def _offer(self, firing: Firing) -> None:
        self.gate.offer(firing, self._last_seen)

    def apply(self, changes: list[Change]) -> list[Finding]:
        """One batch of changes to the engine; the findings of the firings released now.
        The order (recoveries of triggers, of vetoes, then vetoes, then triggers) only
        spares the engine firings it would take back at the end of the batch."""
        facts: list[Change] = []
        for change in changes:
            facts.append(change)
            key = change.fact.signal
            if change.abnormal and key in self.keep:
                previous = self.occurrences.pop((change.fact.target, key), None)
                if previous is not None:
                    facts.append(Change(previous.occurrence(), abnormal=False))
                self.occurrences[(change.fact.target, key)] = change.fact
                facts.append(Change(change.fact.occurrence(), abnormal=True))
        facts.sort(key=lambda ch: (ch.abnormal, (ch.fact.signal in self.veto) != ch.abnormal))
        self.engine.apply((change.fact, change.abnormal) for change in facts)
        ready = self.gate.release(self.engine.holds, self._last_seen, self._time_of)
        return [finding_from_rule(f.rule, f.facts) for f in ready]

    def take_over(self, old: Judge, live: list[AbnormalFact], unchanged: set[str]) -> list[Finding]:
        """A hot reload: the signals true now (``live``) and the onsets the new windows still
        need asserted into this judge's engine, and the old judge's waiting firings of rules
        that did not change carried over. Returns what fires on that (not held back: the
        state asserted is complete, it is now's)."""
        kept = {k: f for k, f in old.occurrences.items() if k[1] in self.keep}
        for fact in live:
            if fact.signal in self.keep:
                kept.setdefault((fact.target, fact.signal), fact)
        self.occurrences = kept
        fresh: list[Firing] = []
        self.engine.on_fire = fresh.append
        try:
            occurring = [f.occurrence() for f in kept.values()]
            self.engine.apply((fact, True) for fact in [*live, *occurring])
        finally:
            self.engine.on_fire = self._offer
        self.gate = old.gate
        self.gate.keep(unchanged)
        return [finding_from_rule(f.rule, f.facts) for f in fresh]

    def close(self) -> None:
        self.engine.close()
