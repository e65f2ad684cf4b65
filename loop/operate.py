"""What people do to incidents, and the approval plans they approve (issue 7's engine side).

    engine.plan(incident_id)                                 # ApprovalPlan | None
    engine.approve(incident_id, by="alice", comment="go", plan_hash=plan.plan_hash)
    engine.reject(incident_id, by="alice", comment="not now")
    engine.pause(None, by="alice", reason="freeze")  /  engine.resume("pm-site-1", by="bob")
    engine.automation()                                      # AutomationStatus
    engine.reanalyze(incident_id, by="bob") / engine.propose(incident_id, "sol-x", by="bob")
    engine.close(incident_id, by="bob", comment="fixed by hand") / engine.escalate(...)
    # (Engine.close() without an incident still releases the store and the graph)

``Operations`` is a mixin of loop.remediate.Remediation (and so of loop.daemon.Engine).
Its public methods are called by the REST API and chat from their worker threads: each
is persisted in SQL (guarded transitions, loop/store.py; pauses in loop/ledger.py) and
announced to the listeners as a StageEvent; one that hands the incident back to the loop
spawns its walk on the daemon's event loop (or the next start resumes it).

Approvals are bound to a plan: when a fix is to wait for a person, the daemon runs the
playbook's dry run and stores an ApprovalPlan (``_ask_approval``); ``approve`` must name
that plan's hash (none: PlanHashRequired, whatever the risk, so nobody approves a plan
they did not look at; one that is not the current plan's: PlanChanged); just before the
run the plan is recomputed (``_recheck_plan``: a fresh dry run, the extra vars re-rendered
from the library) and when its hash differs the approval is void and the incident waits
again with the new plan. A high-risk fix needs an approver other than its requester
(ApprovalRefused).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kernel.approval import Approval, ApprovalPlan, AutomationStatus
from kernel.errors import (
    ApprovalRefused,
    IllegalTransition,
    KnowledgeError,
    MendloopError,
    PlanChanged,
    PlanHashRequired,
)
from kernel.models import Decision, DecisionMode, PlaybookRun, RunStatus
from kernel.state import REDECIDABLE, RUNNING, State, check_transition
from loop.execute import PlaybookRunner, RunDetail, dry_run
from loop.ledger import Ledger
from loop.solutions import SolutionSpec
from loop.store import IncidentStore, IncidentView

if TYPE_CHECKING:
    from loop.analyze import Analyzer
    from loop.decide import Decider


class Void(Exception):
    """The approval of an incident no longer holds (it waits again, or it was escalated)."""


class Operations:
    """Mixin: the people-facing methods and the approval plans (see the module doc)."""

    store: IncidentStore
    ledger: Ledger
    library: dict[str, SolutionSpec]
    analyzer: Analyzer
    decider: Decider
    runner: PlaybookRunner
    _loop: asyncio.AbstractEventLoop | None

    def _spawn(self, incident_id: str) -> None:
        raise NotImplementedError

    def _move(self, incident: IncidentView, state: State, note: str, **kw: Any) -> IncidentView:
        raise NotImplementedError

    def _escalate(self, incident: IncidentView, reason: str, **payload: Any) -> None:
        raise NotImplementedError

    def _emit(
        self, incident_id: str, target: str, state: State | None, note: str, kind: str = "incident"
    ) -> None:
        raise NotImplementedError

    # -- what people do (REST API, chat): thread-safe, persisted, announced -------------

    def _incident(self, incident_id: str) -> IncidentView:
        incident = self.store.get(incident_id)
        if incident is None:
            raise IllegalTransition(f"incident {incident_id} does not exist")
        return incident

    def _announce(self, view: IncidentView, note: str, walk: bool = False) -> IncidentView:
        """Tell the listeners; with ``walk`` the daemon takes the incident on from here."""
        self._emit(view.id, view.target, view.state, note)
        loop = self._loop
        if walk and loop is not None and not loop.is_closed():  # else: the next start resumes it
            loop.call_soon_threadsafe(self._spawn, view.id)
        return view

    def plan(self, incident_id: str) -> ApprovalPlan | None:
        """The plan a person is asked to approve (None: no such incident, or no plan)."""
        incident = self.store.get(incident_id)
        return incident.plan if incident is not None else None

    def approve(
        self, incident_id: str, by: str = "api", comment: str = "", plan_hash: str | None = None
    ) -> IncidentView:
        """A person approves the waiting fix: the incident moves on to the real run, the
        approval bound to the plan hash it names (recorded with the approver).
        IllegalTransition when it does not wait for an approval; PlanHashRequired when the
        incident has a plan and ``plan_hash`` is None; PlanChanged when ``plan_hash`` is
        not the current plan's; ApprovalRefused when ``by`` requested a high-risk fix
        (two-person rule). (An incident waiting without a plan, from before plans existed,
        may be approved without one: the plan is made before the run and, the approval
        being bound to none, it waits again for that plan to be approved.)"""
        incident = self._incident(incident_id)
        if incident.state != State.awaiting_approval:
            check_transition(incident.state, State.approved)  # raises IllegalTransition
        plan = incident.plan
        current = plan.plan_hash if plan is not None else None
        if plan_hash is None and current is not None:
            raise PlanHashRequired(
                f"incident {incident_id}: an approval must name the plan it approves; "
                f"review the current plan (GET /v1/incidents/{incident_id}/plan) and send its "
                f"plan_hash {current}",
                current,
            )
        if plan_hash is not None and plan_hash != current:
            raise PlanChanged(
                f"incident {incident_id}: the plan changed (approved {plan_hash[:12]}, current "
                f"{current[:12] if current else 'none'}); review the current plan and approve it",
                current,
            )
        decision = incident.decision
        requester = decision.requested_by if decision is not None else "mendloop"
        risk = plan.risk if plan is not None else self._risk(decision)
        if risk == "high" and by == requester:
            solution = decision.solution_id if decision is not None else "this fix"
            raise ApprovalRefused(
                f"two-person rule: {solution} is high risk and was requested by {requester}; "
                "it needs an approver other than the requester"
            )
        bound = f"plan {current[:12]}" if current else "no plan"
        note = f"approved by {by} ({bound})" + (f": {comment}" if comment else "")
        approval = Approval(by=by, comment=comment, plan_hash=current)
        view = self.store.transition(incident_id, State.approved, note, approval=approval)
        return self._announce(view, note, walk=True)

    def reject(self, incident_id: str, by: str = "api", comment: str = "") -> IncidentView:
        """A person rejects the waiting fix: the incident ends ``rejected``, nothing runs."""
        note = f"rejected by {by}" + (f": {comment}" if comment else "")
        view = self.store.transition(incident_id, State.rejected, note, reason=note)
        return self._announce(view, note)

    def pause(self, target: str | None, by: str, reason: str = "") -> AutomationStatus:
        """Pause automatic fixes on ``target`` (None: everywhere). Persisted; while paused a
        fix that would run on its own waits in ``awaiting_approval``, approved ones run."""
        self.ledger.pause(target, by, reason)
        where = f"on {target}" if target else "everywhere"
        note = f"automation paused {where} by {by}" + (f": {reason}" if reason else "")
        self._emit("", target or "*", None, note, kind="automation")
        return self.ledger.automation()

    def resume(self, target: str | None, by: str) -> AutomationStatus:
        """Lift the pause on ``target`` (None: the global one; target pauses stay). Fixes
        that waited because of it keep waiting for an approval: nothing runs in a burst."""
        lifted = self.ledger.resume(target)
        where = f"on {target}" if target else "everywhere"
        note = f"automation resumed {where} by {by}" + ("" if lifted else " (was not paused)")
        self._emit("", target or "*", None, note, kind="automation")
        return self.ledger.automation()

    def automation(self) -> AutomationStatus:
        return self.ledger.automation()

    def reanalyze(self, incident_id: str, by: str) -> IncidentView:
        """Run the analysis and the decision again on the incident's findings (from
        analyzed, decided or awaiting_approval); the new decision is requested by ``by``
        and the daemon dispatches it as usual (its plan and approval start afresh)."""
        incident = self._incident(incident_id)
        if incident.state not in REDECIDABLE:
            raise IllegalTransition(
                f"incident {incident_id} is {incident.state}: only an analysed, decided or "
                "waiting incident can be re-analysed"
            )
        report = self.analyzer.report(incident.id, incident.target, incident.findings)
        if report.top is None:
            return self._by_person(incident, State.escalated, by, "no rule explains the findings")
        top = report.top
        note = (
            f"re-analysed by {by}: root cause {top.fault} ({top.component}, score {top.score:.2f})"
        )
        view = self.store.transition(
            incident_id,
            State.analyzed,
            note,
            report=report,
            fault=top.fault,
            plan=None,
            approval=None,
        )
        self._announce(view, note)
        try:
            outcome = self.decider.decide(report)
        except MendloopError as exc:
            return self._by_person(view, State.escalated, by, f"decision failed: {exc}")
        if outcome.decision is None:
            return self._by_person(view, State.escalated, by, outcome.reason)
        decision = outcome.decision.model_copy(update={"requested_by": by})
        view = self.store.transition(incident_id, State.decided, decision.reason, decision=decision)
        return self._announce(view, decision.reason, walk=True)

    def propose(self, incident_id: str, solution_id: str, by: str) -> IncidentView:
        """A person proposes another library solution (from analyzed, decided or
        awaiting_approval): it always waits for an approval, requested by ``by``."""
        spec = self.library.get(solution_id)
        if spec is None:
            raise KnowledgeError(f"no solution {solution_id} in the library")
        incident = self._incident(incident_id)
        if incident.state not in REDECIDABLE:
            raise IllegalTransition(
                f"incident {incident_id} is {incident.state}: a fix can be proposed for an "
                "analysed, decided or waiting incident only"
            )
        try:
            extra_vars = spec.render_vars({**self.decider.base_vars, "target": incident.target})
        except ValueError as exc:
            raise KnowledgeError(f"{solution_id}: bad parameters: {exc}") from exc
        fits = incident.fault in spec.faults
        reason = f"proposed by {by}: {solution_id} ({spec.title}), risk {spec.risk} -> approval" + (
            "" if fits else f"; note: it is not listed for fault {incident.fault}"
        )
        decision = Decision(
            incident_id=incident_id,
            solution_id=solution_id,
            playbook=spec.playbook,
            rollback_playbook=spec.rollback_playbook,
            extra_vars=extra_vars,
            mode=DecisionMode.approval,
            reason=reason,
            requested_by=by,
        )
        view = self.store.transition(
            incident_id, State.decided, reason, decision=decision, plan=None, approval=None
        )
        return self._announce(view, reason, walk=True)

    def close_incident(self, incident_id: str, by: str, comment: str = "") -> IncidentView:
        """A person closes an incident that is not running (terminal ``closed``); also one
        the loop left to a person (escalated, rolled_back). Refused while a playbook may
        run (executing, verifying). ``Engine.close(incident_id, by, comment)`` calls it."""
        return self._by_person(self._incident(incident_id), State.closed, by, comment)

    def escalate(self, incident_id: str, by: str, comment: str = "") -> IncidentView:
        """A person hands the incident to humans (``escalated``); nothing more runs
        automatically. Refused while a playbook may run (executing, verifying)."""
        return self._by_person(self._incident(incident_id), State.escalated, by, comment)

    def _by_person(
        self, incident: IncidentView, state: State, by: str, comment: str
    ) -> IncidentView:
        if incident.state in RUNNING:
            raise IllegalTransition(
                f"incident {incident.id} is {incident.state}: a playbook may be running; "
                f"it cannot be {state} now"
            )
        verb = {State.closed: "closed", State.escalated: "escalated"}[state]
        note = f"{verb} by {by}" + (f": {comment}" if comment else "")
        view = self.store.transition(incident.id, state, note, reason=note)
        return self._announce(view, note)

    def _risk(self, decision: Decision | None) -> str:
        """The library's risk of a decision's solution; unknown counts as high."""
        spec = self._spec(decision) if decision is not None else None
        return spec.risk if spec is not None else "high"

    def _spec(self, decision: Decision) -> SolutionSpec | None:
        return self.library.get(decision.solution_id)

    # -- approval plans (daemon steps) -------------------------------------------------

    async def _make_plan(
        self, incident: IncidentView, decision: Decision
    ) -> tuple[ApprovalPlan, PlaybookRun | None]:
        """The plan of a decision now: a fresh dry run (when the playbook has check mode)
        plus everything that would run. Returns the plan and the dry run."""
        spec = self._spec(decision)
        check_mode = spec.check_mode if spec else True
        detail: RunDetail | None = None
        if check_mode:
            detail = await dry_run(decision, self.runner, self.ledger, "plan")
        run = detail.run if detail is not None else None
        plan = ApprovalPlan.build(
            incident_id=incident.id,
            solution_id=decision.solution_id,
            title=spec.title if spec else decision.solution_id,
            risk=self._risk(decision),
            target=incident.target,
            playbook=decision.playbook,
            extra_vars=decision.extra_vars,
            hosts=self.runner.hosts(),
            check_mode=check_mode,
            check_status=run.status if run else None,
            changed=run.changed if run else 0,
            changed_tasks=run.changed_tasks if run else (),
            diff=tuple(detail.diff) if detail else (),
            rollback_playbook=decision.rollback_playbook,
            rollback_vars=decision.extra_vars if decision.rollback_playbook else {},
            requested_by=decision.requested_by,
        )
        return plan, run

    def _dry_run_failed(
        self, incident: IncidentView, plan: ApprovalPlan, run: PlaybookRun | None
    ) -> bool:
        """A failed dry run ends the incident escalated (the fix cannot run as planned)."""
        if run is None or run.status == RunStatus.successful:
            return False
        self._escalate(
            incident,
            f"dry run of {plan.playbook} ended {run.status}: {'; '.join(run.failed_tasks)}",
            plan=plan,
        )
        return True

    async def _ask_approval(self, incident: IncidentView, why: str) -> None:
        """Dry run -> ApprovalPlan on the incident -> ``awaiting_approval``."""
        decision = incident.decision
        assert decision is not None
        plan, run = await self._make_plan(incident, decision)
        if self._dry_run_failed(incident, plan, run):
            return
        self._move(
            incident,
            State.awaiting_approval,
            f"{why} (plan {plan.plan_hash[:12]}: {plan.playbook}, dry run: {plan.changed} "
            "change(s))",
            plan=plan,
            approval=None,
        )

    def _refreshed(self, incident: IncidentView, decision: Decision) -> Decision:
        """The decision as it would run now: playbooks and extra vars re-rendered from the
        library and the engine's playbook vars (either may have changed since)."""
        spec = self._spec(decision)
        if spec is None:
            return decision
        try:
            extra_vars = spec.render_vars({**self.decider.base_vars, "target": incident.target})
        except ValueError as exc:
            raise KnowledgeError(f"{spec.id}: bad parameters: {exc}") from exc
        return decision.model_copy(
            update={
                "playbook": spec.playbook,
                "rollback_playbook": spec.rollback_playbook,
                "extra_vars": extra_vars,
            }
        )

    async def _recheck_plan(self, incident: IncidentView) -> tuple[Decision, PlaybookRun | None]:
        """An approved fix, just before it runs: the plan again (fresh dry run). Same hash:
        go on with this dry run as the check. Different: the approval is void, the incident
        waits again with the new plan (raises Void)."""
        assert incident.decision is not None
        decision = self._refreshed(incident, incident.decision)
        plan, run = await self._make_plan(incident, decision)
        if self._dry_run_failed(incident, plan, run):
            raise Void
        approval = incident.approval
        if approval is not None and approval.plan_hash == plan.plan_hash:
            return decision, run
        old = incident.plan
        if approval is None or approval.plan_hash is None:
            changes = ["the approval was not bound to a plan"]
        elif old is not None and old.plan_hash == approval.plan_hash:
            changes = old.differences(plan) or ["the plan hash"]
        else:
            changes = ["the plan differs from the approved one"]
        who = approval.by if approval is not None else "the approver"
        self._move(
            incident,
            State.awaiting_approval,
            f"approval by {who} is void: the plan changed before the run "
            f"({'; '.join(changes)}); the new plan {plan.plan_hash[:12]} needs an approval",
            plan=plan,
            decision=decision,
            approval=None,
        )
        raise Void
