"""What people do to incidents through the engine (the REST API and chat call these), on
real components: the twin's HTTP control surface, ansible-runner dry runs and runs, SQLite,
Neo4j. Approval plans bound by their hash (void when the plan changes before the run), the
two-person rule, pause/resume, re-analysis, proposals, close/escalate, and a rollback
interrupted by a crash reconciled through its check mode."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator

import pytest

from kernel.errors import ApprovalRefused, IllegalTransition, PlanChanged, PlanHashRequired
from kernel.models import Decision, DecisionMode
from kernel.state import State
from loop.daemon import Engine
from loop.events import StageEvent
from loop.execute import execute, run_key
from loop.ledger import INTERRUPTED
from loop.steps import subject
from mendloop.service import build_engine
from twin.model import Twin
from twin.server import TwinRunner

from ..conftest import analyzed

pytestmark = pytest.mark.neo4j
TARGETS = ("op-1", "op-2", "op-3", "op-4", "op-5", "op-6")


@pytest.fixture(scope="module")
def twin() -> Iterator[TwinRunner]:
    with TwinRunner(Twin(targets=TARGETS, seed=1), tick_s=1.0, port=0) as runner:
        yield runner


@pytest.fixture
def make_engine(make_settings, graph, twin):
    engines: list[Engine] = []

    def make(**overrides) -> Engine:
        settings = make_settings(twin_port=twin.port, verify_timeout_s=3.0, verify_hold_s=1.0)
        engine = build_engine(settings, {"twin_url": twin.url}, progress=lambda _: None)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def inject(twin: TwinRunner, target: str, fault: str) -> None:
    with twin.locked() as model:
        model.clear(target)
        model.inject(target, fault)


def twin_actions(twin: TwinRunner, target: str) -> list[dict]:
    with twin.locked() as model:
        return model.state(target)["actions"]


def decided(engine: Engine, target: str, mode: DecisionMode) -> str:
    """An incident decided for sol-cache-scale-out with ``mode``, with its remediation plan
    as the decide step makes it (loop/planner.py)."""
    incident_id = analyzed(engine, target)
    decision = Decision(
        incident_id=incident_id, solution_id="sol-cache-scale-out", mode=mode, reason="test"
    )
    plan = engine.planner.resolve(subject(engine.store.get(incident_id)), decision.solution_id)
    engine.store.transition(
        incident_id, State.decided, "test", decision=decision, remediation=plan
    )
    return incident_id


def unhealthy_now(engine: Engine, target: str, series: str, value: float) -> None:
    """One fresh sample, so the fix's precondition holds when it is about to run."""
    engine.submit(
        [{"series": series, "labels": {"target": target}, "ts": time.time(), "value": value}]
    )


def test_an_approval_is_bound_to_its_plan_and_void_when_the_plan_changes(make_engine, twin):
    inject(twin, "op-1", "cache_saturation")
    engine = make_engine()
    events: list[StageEvent] = []
    engine.listeners.append(events.append)

    async def main():
        engine.operations.pause("op-1", by="alice", reason="change freeze")  # auto fixes wait here
        incident_id = decided(engine, "op-1", DecisionMode.auto)
        await engine.start()
        try:
            first = await engine.wait_settled(incident_id, 120)
            with pytest.raises(PlanChanged) as stale:
                engine.operations.approve(incident_id, by="bob", plan_hash="0" * 64)
            assert stale.value.current_hash == first.plan.plan_hash
            # the site's parameter defaults change after the plan was shown, before the run
            site = engine.planner.estate
            old_url = site.defaults["twin_url"]
            new_url = str(old_url).replace("127.0.0.1", "localhost")
            engine.planner.estate = dataclasses.replace(
                site, defaults={**site.defaults, "twin_url": new_url}
            )
            approved = engine.operations.approve(
                incident_id, by="bob", comment="go", plan_hash=first.plan.plan_hash
            )
            assert approved.approval.plan_hash == first.plan.plan_hash
            second = await engine.wait_settled(incident_id, 120)
            unhealthy_now(engine, "op-1", "cache_utilization_pct", 93.0)
            engine.operations.approve(incident_id, by="bob", plan_hash=second.plan.plan_hash)
            final = await engine.wait_settled(incident_id, 120)
            return first, approved, second, final, old_url, new_url
        finally:
            await engine.stop()

    first, approved, second, final, old_url, new_url = asyncio.run(main())
    plan = first.plan
    assert first.state == State.awaiting_approval
    assert "automation paused on op-1 by alice: change freeze" in first.timeline[-1].note
    assert plan.solution_id == "sol-cache-scale-out" and plan.risk == "low"
    assert plan.hosts == ("localhost",) and plan.target == "op-1"
    assert plan.check_status == "successful" and plan.changed == 1
    assert plan.changed_tasks == ("localhost: Say what would be done (check mode only)",)
    assert plan.rollback_playbook == "cache_scale_out_rollback.yml"
    assert plan.rollback_vars == plan.extra_vars and plan.extra_vars["twin_url"] == old_url
    assert plan.requested_by == "mendloop" and len(plan.plan_hash) == 64
    assert f"approved by bob (plan {plan.plan_hash[:12]}): go" in approved.timeline[-1].note
    # recomputed before the run: different vars, so the approval is void and asked again
    assert second.state == State.awaiting_approval and second.approval is None
    void = second.timeline[-1].note
    assert "approval by bob is void" in void
    assert f"extra_vars.twin_url: '{old_url}' -> '{new_url}'" in void
    assert second.plan.extra_vars["twin_url"] == new_url != plan.extra_vars["twin_url"]
    assert second.remediation.extra_vars["twin_url"] == new_url
    # the new plan approved: it runs (automation is still paused: approved runs go)
    states = [t.to_state for t in final.timeline]
    assert states[3:8] == [
        State.awaiting_approval,
        State.approved,
        State.awaiting_approval,
        State.approved,
        State.executing,
    ], states
    # no fresh samples after the run here: verification times out and the fix is rolled back
    assert final.state == State.rolled_back, final.reason
    assert [a["action"] for a in twin_actions(twin, "op-1")] == ["scale_out_cache"]
    phases = [r.phase for r in engine.ledger.runs(final.id)]
    assert phases[:4] == ["plan", "plan-2", "plan-3", "run"]  # the last plan's dry run: the check
    assert [e.kind for e in events if e.incident_id == ""] == ["automation"]
    assert {e.state for e in events if e.incident_id == final.id} >= {
        State.awaiting_approval,
        State.approved,
        State.executing,
    }


def test_an_approval_given_while_the_daemon_was_down_is_void_when_the_dry_run_changed(
    make_engine, twin
):
    """Approved, then the daemon restarts and, before it runs the fix, the fault has gone:
    the recomputed dry run would change nothing, so the approval does not carry over."""
    inject(twin, "op-6", "cache_saturation")
    first = make_engine()
    incident_id = decided(first, "op-6", DecisionMode.approval)

    async def ask() -> None:
        await first.start()
        try:
            await first.wait_settled(incident_id, 120)
        finally:
            await first.stop()

    asyncio.run(ask())
    asked = first.store.get(incident_id)
    # the daemon is down
    first.operations.approve(incident_id, by="bob", plan_hash=asked.plan.plan_hash)
    with twin.locked() as model:
        model.clear("op-6")
    engine = make_engine()  # the restart

    async def resume():
        await engine.start()
        try:
            return await engine.wait_settled(incident_id, 120)
        finally:
            await engine.stop()

    incident = asyncio.run(resume())
    assert asked.plan.changed == 1
    assert incident.state == State.awaiting_approval and incident.approval is None
    void = incident.timeline[-1].note
    assert "approval by bob is void" in void and "changed: 1 -> 0" in void, void
    assert incident.plan.changed == 0 and incident.plan.changed_tasks == ()
    assert "run" not in [r.phase for r in engine.ledger.runs(incident_id)]
    assert twin_actions(twin, "op-6") == []


def test_two_person_rule_for_high_risk_and_proposals(make_engine, twin):
    inject(twin, "op-2", "voltage_sag")
    inject(twin, "op-3", "cache_saturation")
    engine = make_engine()

    async def main():
        high = analyzed(engine, "op-2")
        low = analyzed(engine, "op-3")
        # before start: the restart resumes it
        engine.operations.propose(high, "sol-voltage-dvr", "bob")
        engine.operations.propose(low, "sol-cache-scale-out", "bob")
        await engine.start()
        try:
            waiting = await engine.wait_settled(high, 120)
            shown = waiting.plan.plan_hash
            with pytest.raises(ApprovalRefused, match="two-person rule"):
                engine.operations.approve(high, by="bob", plan_hash=shown)
            with pytest.raises(PlanHashRequired, match=shown):  # approve what you looked at
                engine.operations.approve(high, by="carol")
            engine.operations.approve(
                high, by="carol", comment="second pair of eyes", plan_hash=shown
            )
            low_waiting = await engine.wait_settled(low, 120)
            with pytest.raises(PlanHashRequired):  # whatever the risk
                engine.operations.approve(low, by="bob")
            # low risk: the requester may approve
            engine.operations.approve(low, by="bob", plan_hash=low_waiting.plan.plan_hash)
            return (
                waiting,
                await engine.wait_settled(high, 120),
                low_waiting,
                await engine.wait_settled(low, 120),
            )
        finally:
            await engine.stop()

    waiting, high, low_waiting, low = asyncio.run(main())
    assert waiting.state == State.awaiting_approval
    assert waiting.decision.requested_by == "bob" and waiting.plan.requested_by == "bob"
    assert waiting.plan.risk == "high" and waiting.decision.mode == DecisionMode.approval
    assert "proposed by bob: sol-voltage-dvr" in waiting.decision.reason
    assert "it is not listed for fault cache_saturation" in waiting.decision.reason
    notes = [t.note for t in high.timeline]
    assert any(n.startswith("approved by carol (plan ") for n in notes)
    # approved, re-planned (same plan), then its precondition did not hold: nothing ran
    assert high.state == State.escalated and "preconditions of sol-voltage-dvr" in high.reason
    assert "run" not in [r.phase for r in engine.ledger.runs(high.id)]
    assert low_waiting.state == State.awaiting_approval
    assert any(t.note.startswith("approved by bob") for t in low.timeline)


def test_pause_everywhere_then_reanalyze_close_and_escalate(make_engine, twin):
    inject(twin, "op-4", "cache_saturation")
    engine = make_engine()

    async def main():
        status = engine.operations.pause(None, by="alice", reason="incident review")
        assert status.paused and status.by == "alice"
        incident_id = decided(engine, "op-4", DecisionMode.auto)
        await engine.start()
        try:
            waiting = await engine.wait_settled(incident_id, 120)
            again = await asyncio.to_thread(engine.operations.reanalyze, incident_id, "bob")
            rewaiting = await engine.wait_settled(incident_id, 120)
            resumed = engine.operations.resume(None, by="alice")
            closed = engine.operations.close(incident_id, by="carol", comment="fixed by hand")
            return waiting, again, rewaiting, resumed, closed
        finally:
            await engine.stop()

    waiting, again, rewaiting, resumed, closed = asyncio.run(main())
    assert "automation paused everywhere by alice: incident review" in waiting.timeline[-1].note
    assert again.decision.requested_by == "bob"
    assert [t.to_state for t in again.timeline][-2:] == [State.analyzed, State.decided]
    assert again.timeline[-2].note.startswith("re-analysed by bob: root cause cache_saturation")
    assert rewaiting.state == State.awaiting_approval and rewaiting.plan.requested_by == "bob"
    assert not resumed.paused and engine.operations.automation() == resumed
    assert closed.state == State.closed and closed.reason == "closed by carol: fixed by hand"
    with pytest.raises(IllegalTransition):
        engine.operations.close(closed.id, by="carol")
    with pytest.raises(IllegalTransition):
        engine.operations.reanalyze(closed.id, by="carol")
    # running incidents are refused; escalated ones can still be closed by a person
    running = decided(engine, "op-4", DecisionMode.auto)
    engine.store.transition(running, State.executing, "a run")
    with pytest.raises(IllegalTransition, match="a playbook may be running"):
        engine.operations.escalate(running, by="carol")
    with pytest.raises(IllegalTransition, match="a playbook may be running"):
        engine.operations.close(running, by="carol")
    handed = decided(engine, "op-4", DecisionMode.approval)
    escalated = engine.operations.escalate(handed, by="carol", comment="needs the DBA")
    assert (
        escalated.state == State.escalated
        and escalated.reason == "escalated by carol: needs the DBA"
    )
    assert engine.operations.close(handed, by="dave").state == State.closed


@pytest.mark.parametrize("took_effect", [True, False])
def test_a_rollback_interrupted_by_a_crash_is_reconciled_on_restart(make_engine, twin, took_effect):
    """The state a kill -9 during the rollback leaves: the incident ``verifying``, the
    rollback's row ``started``. The restarted daemon asks the rollback's check mode instead
    of escalating; the rollback never runs twice."""
    inject(twin, "op-5", "cache_saturation")
    before = build_engine_and_crash(make_engine, twin, took_effect)
    engine = make_engine()

    async def main():
        await engine.start()
        try:
            return await engine.wait_settled(before, 120)
        finally:
            await engine.stop()

    incident = asyncio.run(main())
    assert incident.state == State.rolled_back, incident.reason
    assert "verification timed_out: cache_hit_ratio" in incident.reason  # why it rolled back
    rolled = [a for a in twin_actions(twin, "op-5") if a["rolled_back_at"] is not None]
    assert len(rolled) == 1
    runs = {r.phase: r for r in engine.ledger.runs(incident.id)}
    assert runs["rollback"].status == INTERRUPTED
    if took_effect:
        assert "took effect; not re-run" in incident.reason and "rollback-2" not in runs
    else:
        assert "ran once more as rollback-2" in incident.reason
        assert runs["rollback-2"].status == "successful"


def build_engine_and_crash(make_engine, twin: TwinRunner, took_effect: bool) -> str:
    engine = make_engine()
    incident_id = decided(engine, "op-5", DecisionMode.auto)
    plan = engine.store.get(incident_id).remediation
    engine.store.transition(incident_id, State.executing, "running")
    execution = asyncio.run(execute(plan, engine.runner, engine.ledger))
    engine.store.transition(incident_id, State.verifying, "verifying", execution=execution)
    why = "verification timed_out: cache_hit_ratio"
    engine.ledger.begin_run(
        run_key(plan, "rollback"), incident_id, "rollback", plan.rollback_playbook, why
    )
    if took_effect:  # the rollback's POST reached the twin before the kill
        with twin.locked() as model:
            model.rollback("op-5", "scale_out_cache")
    return incident_id
