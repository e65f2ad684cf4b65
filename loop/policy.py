"""Earned autonomy: how far a fix may go on its own, as pure functions over its record.

    key = AutonomyKey("sol-cache-scale-out", "cache_saturation", target_class("pm-site-1"))
    state = initial_state(key, successes=2, failures=0)        # from the graph's track record
    mode, why = choose_mode(state, "low", recent_on_target=0, recent_total=0)
    state = after_outcome(state, verified=False, incident_id="abc")   # auto -> approval

Like the paper's technology-readiness gates (TRL 3 -> 9), each (solution, fault, target
class) climbs ``suggest -> approval -> auto``: it starts where the knowledge graph's track
record puts it (verified past fixes, seed and learnt cases alike), climbs one level after
``promote_after`` verified successes in a row, and drops one level after any failed
verification. High-risk solutions never go beyond ``approval``. Rate limits turn an
automatic decision into one that needs approval, so a runaway loop (the same fix firing
again and again) is impossible. Every result carries the reason, for audit and for chat.
The persistence of the states lives in loop/ledger.py; nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from kernel.models import DecisionMode

LEVELS = (DecisionMode.suggest, DecisionMode.approval, DecisionMode.auto)


@dataclass(frozen=True)
class PolicyConfig:
    """The gates. Defaults: two verified fixes with a Beta success rate >= 0.75 earn
    ``auto``; one earns ``approval``; two in a row climb one level."""

    approval_after: int = 1
    auto_after: int = 2
    auto_min_rate: float = 0.75
    promote_after: int = 2
    max_auto_per_target_per_hour: int = 6
    max_auto_per_hour: int = 30
    # targets reporting for less than the loop's ``established_s`` share this part of the
    # hourly budget: a flood of made-up targets cannot spend what real ones need
    new_target_share: float = 0.5

    @property
    def max_auto_per_hour_new_targets(self) -> int:
        return int(self.max_auto_per_hour * self.new_target_share)


@dataclass(frozen=True)
class AutonomyKey:
    solution_id: str
    fault: str
    target_class: str

    def __str__(self) -> str:
        return f"{self.solution_id}|{self.fault}|{self.target_class}"


@dataclass(frozen=True)
class AutonomyState:
    key: AutonomyKey
    level: DecisionMode
    successes: int = 0  # verified outcomes of this key, since it was first seen
    failures: int = 0
    streak: int = 0  # verified successes since the level last changed
    reason: str = ""


def target_class(target: str) -> str:
    """Targets of one kind share their record: ``pm-site-1`` and ``pm-site-7`` are
    ``pm-site`` (a trailing ``-<n>`` / ``<n>`` index is dropped)."""
    return re.sub(r"[-_]?\d+$", "", target) or target


def _rate(successes: int, failures: int) -> float:
    return (successes + 1) / (successes + failures + 2)


def initial_state(
    key: AutonomyKey, successes: int, failures: int, cfg: PolicyConfig | None = None
) -> AutonomyState:
    """Where a key starts: the solution's verified track record in the knowledge graph."""
    cfg = cfg or PolicyConfig()
    rate = _rate(successes, failures)
    if successes >= cfg.auto_after and rate >= cfg.auto_min_rate:
        level = DecisionMode.auto
    elif successes >= cfg.approval_after:
        level = DecisionMode.approval
    else:
        level = DecisionMode.suggest
    reason = (
        f"track record {successes} verified fix(es), {failures} failure(s) "
        f"(success rate {rate:.2f}) -> {level}"
    )
    return AutonomyState(key, level, reason=reason)


def _step(level: DecisionMode, by: int) -> DecisionMode:
    index = min(max(LEVELS.index(level) + by, 0), len(LEVELS) - 1)
    return LEVELS[index]


def after_outcome(
    state: AutonomyState,
    verified: bool,
    incident_id: str,
    cfg: PolicyConfig | None = None,
) -> AutonomyState:
    """The state after one verified outcome: climbs after a streak, drops on a failure."""
    cfg = cfg or PolicyConfig()
    if not verified:
        level = _step(state.level, -1)
        return replace(
            state,
            level=level,
            failures=state.failures + 1,
            streak=0,
            reason=f"dropped {state.level} -> {level}: verification failed (incident "
            f"{incident_id})",
        )
    streak = state.streak + 1
    if streak >= cfg.promote_after and state.level != DecisionMode.auto:
        level = _step(state.level, +1)
        return replace(
            state,
            level=level,
            successes=state.successes + 1,
            streak=0,
            reason=f"climbed {state.level} -> {level}: {streak} verified fix(es) in a row "
            f"(last: incident {incident_id})",
        )
    return replace(
        state,
        successes=state.successes + 1,
        streak=streak,
        reason=f"{state.level}: {streak} verified fix(es) since the last change "
        f"(last: incident {incident_id}); {state.reason}",
    )


def choose_mode(
    state: AutonomyState,
    risk: str,
    recent_on_target: int,
    recent_total: int,
    cfg: PolicyConfig | None = None,
    *,
    recent_on_new_targets: int | None = None,
) -> tuple[DecisionMode, str]:
    """The mode for one decision now, and why: the earned level, capped by risk and by the
    automatic actions of the last hour (on this target, overall, and, for a target that is
    not established yet, ``recent_on_new_targets``: those on targets that are not either)."""
    cfg = cfg or PolicyConfig()
    why = f"autonomy of {state.key}: {state.level} ({state.reason})"
    mode = state.level
    if risk == "high" and mode == DecisionMode.auto:
        return DecisionMode.approval, f"{why}; high risk: never automatic -> approval"
    limit = limit_reached(
        recent_on_target, recent_total, cfg, recent_on_new_targets=recent_on_new_targets
    )
    if mode == DecisionMode.auto and limit:
        return DecisionMode.approval, f"{why}; {limit}"
    return mode, why


def limit_reached(
    recent_on_target: int,
    recent_total: int,
    cfg: PolicyConfig | None = None,
    *,
    recent_on_new_targets: int | None = None,
) -> str | None:
    """Why one more automatic action would be one too many (None: it would not).
    ``recent_on_new_targets`` is given for a target that is not established: then the
    new targets' share of the hourly budget applies too."""
    cfg = cfg or PolicyConfig()
    if (
        recent_on_new_targets is not None
        and recent_on_new_targets >= cfg.max_auto_per_hour_new_targets
    ):
        return (
            f"limit reached: {recent_on_new_targets} automatic action(s) in the last hour on "
            f"targets reporting for a short while (max {cfg.max_auto_per_hour_new_targets}, "
            f"{cfg.new_target_share:.0%} of {cfg.max_auto_per_hour}) -> approval"
        )
    if recent_on_target >= cfg.max_auto_per_target_per_hour:
        return (
            f"limit reached: {recent_on_target} automatic action(s) on this target in the "
            f"last hour (max {cfg.max_auto_per_target_per_hour}) -> approval"
        )
    if recent_total >= cfg.max_auto_per_hour:
        return (
            f"limit reached: {recent_total} automatic action(s) in the last hour "
            f"(max {cfg.max_auto_per_hour}) -> approval"
        )
    return None
