"""What people do to incidents: one service, called by the REST API and chat.

    ops = Operations(store, ledger, analyzer, decider, planner, events, walk=engine.walk)
    ops.plan(incident_id)                                  # ApprovalPlan | None
    ops.approve(incident_id, by="alice", comment="go", plan_hash=plan.plan_hash)
    ops.reject(incident_id, by="alice", comment="not now")
    ops.pause(None, by="alice", reason="freeze")  /  ops.resume("pm-site-1", by="bob")
    ops.automation()                                       # AutomationStatus
    ops.reanalyze(incident_id, by="bob") / ops.propose(incident_id, "sol-x", by="bob")
    ops.close(incident_id, by="bob", comment="fixed by hand") / ops.escalate(...)

Every method is called from the API's and chat's worker threads: each is persisted in SQL
(guarded transitions, loop/store.py; pauses in loop/ledger.py) and announced to the
listeners as a StageEvent; one that hands the incident back to the loop asks the engine
to walk it (``walk``: thread-safe; without a running loop the next start resumes it).

Approvals are bound to a plan: when a fix is to wait for a person, the daemon runs the
playbook's dry run and stores an ApprovalPlan (loop/steps/approvals.py); ``approve`` must
name that plan's hash (none: PlanHashRequired, whatever the risk, so nobody approves a
plan they did not look at; one that is not the current plan's: PlanChanged); just before
the run the plan is made again and when its hash differs the approval is void and the
incident waits again with the new plan. A high-risk fix needs an approver other than its
requester (ApprovalRefused).
"""

from __future__ import annotations

from collections.abc import Callable

from kernel.approval import Approval, ApprovalPlan, AutomationStatus
from kernel.errors import (
    ApprovalRefused,
    IllegalTransition,
    KnowledgeError,
    MendloopError,
    PlanChanged,
    PlanHashRequired,
)
from kernel.models import Decision, DecisionMode
from kernel.state import REDECIDABLE, RUNNING, State, check_transition
from loop.analyze import Analyzer
from loop.decide import Decider
from loop.events import Events
from loop.ledger import Ledger
from loop.planner import Planner
from loop.steps import subject
from loop.store import IncidentStore, IncidentView


class Operations:
    """People's actions on incidents and automation (see the module doc)."""

    def __init__(
        self,
        store: IncidentStore,
        ledger: Ledger,
        analyzer: Analyzer,
        decider: Decider,
        planner: Planner,
        events: Events,
        walk: Callable[[str], None],
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.analyzer = analyzer
        self.decider = decider
        self.planner = planner
        self.events = events
        self.walk = walk

    # -- what people do (REST API, chat): thread-safe, persisted, announced -------------

    def _incident(self, incident_id: str) -> IncidentView:
        incident = self.store.get(incident_id)
        if incident is None:
            raise IllegalTransition(f"incident {incident_id} does not exist")
        return incident

    def _announce(self, view: IncidentView, note: str, walk: bool = False) -> IncidentView:
        """Tell the listeners; with ``walk`` the daemon takes the incident on from here."""
        self.events.emit(view.id, view.target, view.state, note)
        if walk:
            self.walk(view.id)
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
        risk = plan.risk if plan is not None else self._risk(incident)
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
        self.events.emit("", target or "*", None, note, kind="automation")
        return self.ledger.automation()

    def resume(self, target: str | None, by: str) -> AutomationStatus:
        """Lift the pause on ``target`` (None: the global one; target pauses stay). Fixes
        that waited because of it keep waiting for an approval: nothing runs in a burst."""
        lifted = self.ledger.resume(target)
        where = f"on {target}" if target else "everywhere"
        note = f"automation resumed {where} by {by}" + ("" if lifted else " (was not paused)")
        self.events.emit("", target or "*", None, note, kind="automation")
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
        try:
            remediation = self.planner.resolve(subject(view), decision.solution_id)
        except KnowledgeError as exc:  # its parameters do not render
            return self._by_person(view, State.escalated, by, str(exc))
        view = self.store.transition(
            incident_id, State.decided, decision.reason, decision=decision, remediation=remediation
        )
        return self._announce(view, decision.reason, walk=True)

    def propose(self, incident_id: str, solution_id: str, by: str) -> IncidentView:
        """A person proposes another library solution (from analyzed, decided or
        awaiting_approval): it always waits for an approval, requested by ``by``."""
        spec = self.planner.spec(solution_id)  # KnowledgeError: not in the library
        incident = self._incident(incident_id)
        if incident.state not in REDECIDABLE:
            raise IllegalTransition(
                f"incident {incident_id} is {incident.state}: a fix can be proposed for an "
                "analysed, decided or waiting incident only"
            )
        remediation = self.planner.resolve(subject(incident), solution_id)
        fits = incident.fault in spec.faults
        reason = f"proposed by {by}: {solution_id} ({spec.title}), risk {spec.risk} -> approval" + (
            "" if fits else f"; note: it is not listed for fault {incident.fault}"
        )
        decision = Decision(
            incident_id=incident_id,
            solution_id=solution_id,
            mode=DecisionMode.approval,
            reason=reason,
            requested_by=by,
        )
        view = self.store.transition(
            incident_id,
            State.decided,
            reason,
            decision=decision,
            remediation=remediation,
            plan=None,
            approval=None,
        )
        return self._announce(view, reason, walk=True)

    def close(self, incident_id: str, by: str, comment: str = "") -> IncidentView:
        """A person closes an incident that is not running (terminal ``closed``); also one
        the loop left to a person (escalated, rolled_back). Refused while a playbook may
        run (executing, verifying)."""
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

    def _risk(self, incident: IncidentView) -> str:
        """The risk of the incident's fix: its plan's (the library's); a fix decided before
        plans, the library's now; unknown counts as high."""
        if incident.remediation is not None:
            return incident.remediation.risk
        decision = incident.decision
        spec = self.planner.library.get(decision.solution_id) if decision is not None else None
        return spec.risk if spec is not None else "high"
