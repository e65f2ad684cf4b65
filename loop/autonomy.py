"""Earned autonomy at run time: the policy (loop/policy.py, pure) over the ledger's records
(loop/ledger.py, SQL) and the targets' standing (loop/admission.py).

    autonomy = EarnedAutonomy(ledger, policy, standing)
    mode, why = autonomy.mode(solution, fault, target)   # the Decider's callback
    autonomy.limit(target)                               # an hourly limit reached (why) or None
"""

from __future__ import annotations

from datetime import timedelta

from kernel.models import DecisionMode, Solution
from loop.admission import Standing
from loop.ledger import Ledger
from loop.policy import (
    AutonomyKey,
    PolicyConfig,
    choose_mode,
    initial_state,
    limit_reached,
    target_class,
)

HOUR = timedelta(hours=1)


class EarnedAutonomy:
    def __init__(self, ledger: Ledger, policy: PolicyConfig, standing: Standing) -> None:
        self.ledger = ledger
        self.policy = policy
        self.standing = standing

    def mode(self, solution: Solution, fault: str, target: str) -> tuple[DecisionMode, str]:
        """The earned mode of a (solution, fault, target class) now, and why (policy.py);
        a key seen for the first time starts from the solution's graph track record.
        ``solution.risk`` is the library's (the Decider passes it so)."""
        key = AutonomyKey(solution.id, fault, target_class(target))
        state = self.ledger.autonomy(key)
        if state is None:
            state = initial_state(key, solution.successes, solution.failures, self.policy)
            self.ledger.save_autonomy(state)
        return choose_mode(
            state,
            solution.risk,
            self.ledger.auto_actions(target, HOUR),
            self.ledger.auto_actions(None, HOUR),
            self.policy,
            recent_on_new_targets=self.on_new_targets(target, HOUR),
        )

    def limit(self, target: str) -> str | None:
        """The hourly limits now (incidents decided together must not overrun them)."""
        return limit_reached(
            self.ledger.auto_actions(target, HOUR),
            self.ledger.auto_actions(None, HOUR),
            self.policy,
            recent_on_new_targets=self.on_new_targets(target, HOUR),
        )

    def on_new_targets(self, target: str, within: timedelta) -> int | None:
        """For a target that is not established: the automatic actions of the last
        ``within`` on targets that are not established either (None for an established
        target, which the new targets' share does not bind)."""
        if self.standing.established(target):
            return None
        recent = self.ledger.auto_action_targets(within)
        return sum(n for t, n in recent.items() if not self.standing.established(t))
