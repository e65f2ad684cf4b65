"""Every failure mode of the twin, end to end on real components: the twin breaks,
durable_rules explains it, Neo4j finds the case, the earned autonomy decides (automatic, or
approval given through the REST API), ansible-runner runs the real playbook against the
twin's control surface, the metrics recover and the outcome is learnt.

One engine, twin and API serve the whole module (CI cost): every fault gets a target of
its own and all are injected at once, so the module also shows remediations on different
targets running side by side. One more target gets a deliberately wrong remedy, which
verification must catch and the rollback undo; another is in shadow mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kernel.models import Decision, DecisionMode, RunStatus, VerificationStatus
from kernel.shadow import ShadowScope
from kernel.state import State
from loop.decide import Decider
from loop.policy import AutonomyKey
from loop.steps import subject
from mendloop.replay import backtest
from twin.model import ACTIONS, FAULTS

from ..conftest import analyzed
from .conftest import LoopHarness, empty_graph, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]

FAULT_NAMES = sorted(FAULTS)
TARGETS = {fault: f"e2e-{i + 1}" for i, fault in enumerate(FAULT_NAMES)}
WRONG_TARGET = "wrong-1"
SHADOW_TARGET = "shadow-1"
AUTO_PATH = [State.open, State.analyzed, State.decided, State.executing, State.verifying]
APPROVAL_PATH = [
    State.open,
    State.analyzed,
    State.decided,
    State.awaiting_approval,
    State.approved,
    State.executing,
    State.verifying,
]


@pytest.fixture(scope="module")
def settled(neo4j_settings, tmp_path_factory) -> Iterator[tuple[LoopHarness, dict]]:
    """Inject every fault (own target each) plus the wrong-remedy case; wait for all."""
    empty_graph(neo4j_settings)
    var_dir = tmp_path_factory.mktemp("e2e") / "var"
    settings = settings_for(neo4j_settings, var_dir, verify_hold_s=3.0, verify_timeout_s=45.0)
    with LoopHarness(settings, [*TARGETS.values(), WRONG_TARGET, SHADOW_TARGET]) as loop:
        engine = loop.engine
        engine.steps.dispatch.shadow = ShadowScope(targets=frozenset({SHADOW_TARGET}))
        time.sleep(2)  # a healthy baseline first
        wrong = _start_wrong_remedy(loop)
        for fault, target in TARGETS.items():
            loop.inject(target, fault)
        loop.inject(SHADOW_TARGET, "cache_saturation")
        opened = {fault: loop.wait_opened(target) for fault, target in TARGETS.items()}
        settled = {}
        approvals = {}
        for fault, incident_id in opened.items():
            incident = loop.wait_settled(incident_id)
            if incident.state == State.awaiting_approval:
                approvals[fault] = loop.approve(incident_id)
                incident = loop.wait_settled(incident_id)
            settled[fault] = incident
        results = {
            "incidents": settled,
            "approvals": approvals,
            "twin": {f: loop.twin_state(t) for f, t in TARGETS.items()},
            "runs": {f: engine.ledger.runs(i.id) for f, i in settled.items()},
            "wrong": loop.wait_settled(wrong),
            "wrong_twin": loop.twin_state(WRONG_TARGET),
            "wrong_runs": engine.ledger.runs(wrong),
            "autonomy": {str(s.key): s for s in engine.ledger.autonomy_states()},
            "shadow": loop.wait_settled(loop.wait_opened(SHADOW_TARGET)),
            "shadow_twin": loop.twin_state(SHADOW_TARGET),
            "shadowed": engine.ledger.shadowed(SHADOW_TARGET),
            "backtest": backtest(
                [engine.store.get(i.id) for i in settled.values()],
                engine.analyzer,
                Decider(
                    engine.graph,
                    engine.embedder,
                    settings.match_min_similarity,
                    library=engine.library,
                ),
            ),
        }
        yield loop, results


def _start_wrong_remedy(loop: LoopHarness) -> str:
    """An overheating meter 'fixed' by recalibration (the look-alike fault's remedy). The
    incident is opened with the rule's finding and the wrong decision is written to the
    store before the fault is injected (so the twin's own findings join it rather than
    open another); then the daemon drives it like any other."""
    engine = loop.engine
    assert engine is not None
    incident_id = analyzed(engine, WRONG_TARGET, "meter-chip-overheat")
    spec = engine.library["sol-meter-recalibration"]
    decision = Decision(
        incident_id=incident_id,
        solution_id=spec.id,
        mode=DecisionMode.auto,
        reason="forced by the test: the look-alike fault's remedy",
    )
    plan = engine.planner.resolve(subject(engine.store.get(incident_id)), spec.id)
    assert plan.extra_vars["target"] == WRONG_TARGET
    engine.store.transition(incident_id, State.decided, "test", decision=decision, remediation=plan)
    loop.inject(WRONG_TARGET, "meter_chip_overheat")
    # its precondition (metering deviation out of class) holds a few seconds after onset
    while not (
        (point := engine.monitor.latest(WRONG_TARGET, "meter_metering_deviation_pct"))
        and not engine.catalog["meter_metering_deviation_pct"].is_healthy(point[1])
    ):
        time.sleep(0.2)
    engine.walk(incident_id)
    return incident_id


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_every_failure_mode_is_detected_analysed_matched_executed_and_verified(fault, settled):
    _, results = settled
    incident = results["incidents"][fault]
    assert incident.state == State.resolved, incident.reason
    path = [t.to_state for t in incident.timeline][:-1]
    decision = incident.decision
    if decision.mode == DecisionMode.auto:
        assert path == AUTO_PATH
        assert "autonomy of" in decision.reason and "-> auto" in decision.reason
    else:  # approval: high risk, or a limit; approved through the REST API
        assert decision.mode == DecisionMode.approval
        assert path == APPROVAL_PATH
        assert results["approvals"][fault].status_code == 200
        assert "approved by e2e-operator" in incident.timeline[4].note
        # bound to the plan it was asked with (the dry run at decision time), which the
        # plan recomputed before the run matched: its dry run stood for the check
        assert incident.approval.plan_hash == incident.plan.plan_hash
        assert f"(plan {incident.plan.plan_hash[:12]})" in incident.timeline[4].note
        assert incident.plan.changed == 1 and incident.plan.hosts == ("localhost",)
    # analyze: the rule named the cause; decide: a seed case of the same fault
    assert incident.report.top.fault == fault
    assert incident.decision.match.similarity >= 0.8
    # execute: the dry run saw what to do, the real run did it, each exactly once
    execution = incident.execution
    assert execution.check_result.check_mode and execution.check_result.changed == 1
    assert execution.run.status == RunStatus.successful and execution.run.changed == 1
    runs = results["runs"][fault]
    dry_runs = ["check"] if decision.mode == DecisionMode.auto else ["plan", "plan-2"]
    assert [r.phase for r in runs] == [*dry_runs, "run"]
    assert all(r.events and r.status == "successful" for r in runs)
    # the twin is repaired by the right action, applied once
    twin = results["twin"][fault]
    assert twin["faults"] == []
    (action,) = [a["action"] for a in twin["actions"]]
    assert fault in ACTIONS[action].clears
    # verify: the solution's metrics and the SQI held
    assert incident.verification.status == VerificationStatus.passed
    assert any(c.series.startswith("sqi") for c in incident.verification.checks)


def test_both_autonomy_paths_are_exercised(settled):
    _, results = settled
    modes = {f: i.decision.mode for f, i in results["incidents"].items()}
    assert DecisionMode.auto in modes.values()
    # high risk never runs without a person, whatever its track record
    assert modes["voltage_sag"] == modes["power_factor_drop"] == DecisionMode.approval
    # a verified fix counts for its (solution, fault, target class)
    cache = results["autonomy"]["sol-cache-scale-out|cache_saturation|e2e"]
    assert cache.successes == 1


def test_a_wrong_remedy_is_caught_by_verification_and_rolled_back(settled):
    _, results = settled
    incident = results["wrong"]
    assert incident.state == State.rolled_back, incident.reason
    assert incident.verification.status == VerificationStatus.timed_out
    assert "meter_chip_temp_c" in incident.reason
    assert [r.phase for r in results["wrong_runs"]] == [
        "check",
        "run",
        "rollback",
        "rollback-check",
    ]
    assert "nothing left to revert" in incident.reason
    twin = results["wrong_twin"]
    assert twin["faults"] == ["meter_chip_overheat"]  # the wrong fix changed nothing ...
    (applied,) = twin["actions"]
    assert applied["action"] == "recalibrate_meter" and applied["rolled_back_at"] is not None
    # ... and the failure is learnt: that solution drops a level for this fault and class
    key = str(AutonomyKey("sol-meter-recalibration", "meter_chip_overheat", "wrong"))
    state = results["autonomy"][key]
    assert state.failures == 1 and "verification failed" in state.reason
    assert isinstance(incident.decision, Decision)


def test_shadow_mode_runs_the_loop_but_executes_nothing(settled):
    _, results = settled
    incident = results["shadow"]
    assert incident.state == State.escalated
    assert incident.reason.startswith("shadow mode for target shadow-1: would have run ")
    assert incident.decision.solution_id == "sol-cache-scale-out" and incident.execution is None
    (record,) = results["shadowed"]
    assert (record.incident_id, record.playbook) == (incident.id, "cache_scale_out.yml")
    assert record.mode in ("auto", "approval")
    assert results["shadow_twin"]["actions"] == []  # the platform was not touched


def test_replay_backtests_recorded_incidents_through_todays_analysis_and_decision(settled):
    _, results = settled
    summary = results["backtest"]
    assert summary["incidents"] == len(FAULT_NAMES)
    assert summary["same_fault"] == len(FAULT_NAMES)
    # the graph has learnt from these very incidents: the same solutions are chosen again
    assert summary["same_solution"] == len(FAULT_NAMES), summary["changed"]
