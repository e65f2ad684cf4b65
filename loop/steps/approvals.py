"""The plan a person approves: made (a dry run of the remediation plan, loop/execute.py)
when a fix is to wait for approval, and made again just before an approved fix runs.

    plans = ApprovalPlans(runner, ledger, planner)
    transition = await plans.ask(incident, "needs a person's approval: ...")
    checked = await plans.recheck(incident)   # Checked (go on) or a Transition (void, failed)

An approval names a plan hash (kernel/approval.py: the remediation plan, the hosts and the
dry run's outcome). Just before the run the remediation plan is resolved again from the
library and the engine's playbook vars, and dry-run again: the same hash, the fix runs
with that dry run as its check; a different one (the library, the vars or what the dry run
would change moved since), the approval is void and the incident waits again with the new
plan. docs/REMEDIATION.md explains why the dry run is part of what is approved.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel.approval import ApprovalPlan
from kernel.models import PlaybookRun, RunStatus
from kernel.plan import RemediationPlan
from kernel.state import State
from loop.execute import PlaybookRunner, RunDetail, dry_run
from loop.ledger import Ledger
from loop.planner import Planner
from loop.steps import Plans, subject
from loop.store import IncidentView
from loop.transition import Transition


@dataclass(frozen=True)
class Checked:
    """An approved fix still holds: the plan to run and its fresh dry run (the check)."""

    plan: RemediationPlan
    dry_run: PlaybookRun | None


class ApprovalPlans:
    def __init__(self, runner: PlaybookRunner, ledger: Ledger, planner: Planner) -> None:
        self.runner = runner
        self.ledger = ledger
        self.planner = planner
        self.plans = Plans(planner)

    async def make(
        self, remediation: RemediationPlan, requested_by: str
    ) -> tuple[ApprovalPlan, PlaybookRun | None]:
        """The plan of ``remediation`` now: a fresh dry run (when the playbook has check
        mode) beside everything that would run. Returns the plan and the dry run."""
        detail: RunDetail | None = None
        if remediation.check_mode:
            detail = await dry_run(remediation, self.runner, self.ledger, "plan")
        run = detail.run if detail is not None else None
        diff = tuple(detail.diff) if detail is not None else ()
        hosts = remediation.hosts or self.runner.hosts()  # the run's --limit, or the machine
        plan = ApprovalPlan.of(remediation, hosts, run, diff, requested_by)
        return plan, run

    @staticmethod
    def _failed(plan: ApprovalPlan, run: PlaybookRun | None) -> Transition | None:
        """A failed dry run ends the incident escalated (the fix cannot run as planned)."""
        if run is None or run.status == RunStatus.successful:
            return None
        return Transition.escalate(
            f"dry run of {plan.playbook} ended {run.status}: {'; '.join(run.failed_tasks)}",
            plan=plan,
        )

    async def ask(self, incident: IncidentView, why: str) -> Transition:
        """Dry run -> ApprovalPlan on the incident -> ``awaiting_approval``."""
        assert incident.decision is not None
        remediation = self.plans.of(incident)
        plan, run = await self.make(remediation, incident.decision.requested_by)
        if (failed := self._failed(plan, run)) is not None:
            return failed
        return Transition(
            State.awaiting_approval,
            f"{why} (plan {plan.plan_hash[:12]}: {plan.playbook}, dry run: {plan.changed} "
            "change(s))",
            remediation=remediation,
            plan=plan,
            approval=None,
        )

    async def recheck(self, incident: IncidentView) -> Checked | Transition:
        """An approved fix, just before it runs: the plan again (resolved again, a fresh
        dry run). Same hash: Checked. Different: the approval is void, the incident waits
        again with the new plan (that Transition)."""
        assert incident.decision is not None
        remediation = self.planner.resolve(subject(incident), incident.decision.solution_id)
        plan, run = await self.make(remediation, incident.decision.requested_by)
        if (failed := self._failed(plan, run)) is not None:
            return failed
        approval = incident.approval
        if approval is not None and approval.plan_hash == plan.plan_hash:
            return Checked(remediation, run)
        old = incident.plan
        if approval is None or approval.plan_hash is None:
            changes = ["the approval was not bound to a plan"]
        elif old is not None and old.plan_hash == approval.plan_hash:
            changes = old.differences(plan) or ["the plan hash"]
        else:
            changes = ["the plan differs from the approved one"]
        who = approval.by if approval is not None else "the approver"
        return Transition(
            State.awaiting_approval,
            f"approval by {who} is void: the plan changed before the run "
            f"({'; '.join(changes)}); the new plan {plan.plan_hash[:12]} needs an approval",
            remediation=remediation,
            plan=plan,
            approval=None,
        )
