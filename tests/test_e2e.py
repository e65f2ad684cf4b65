"""The whole loop on real components: the twin breaks, durable_rules explains it, Neo4j
finds the case, ansible-runner runs the real playbook against the twin's control surface,
the metrics recover, and the outcome lands back in the graph."""

import asyncio

import pytest

from knowledge.seed import load_cases
from loop.models import DecisionMode, RunStatus, VerificationStatus
from loop.service import build_engine
from loop.state import State
from twin.model import Twin
from twin.server import TwinRunner

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]
TARGET = "pm-site-1"


@pytest.fixture
def loop_settings(make_settings):
    return make_settings(verify_hold_s=3.0, verify_timeout_s=90.0)


async def close_one_loop(settings, fault):
    twin = TwinRunner(Twin(targets=(TARGET,), seed=7), tick_s=0.5, port=0)
    twin.start()
    engine = build_engine(settings, {"twin_url": twin.url}, progress=lambda _: None)
    twin.sink = engine.submit
    await engine.start()
    try:
        await asyncio.sleep(2)  # healthy baseline first
        with twin.locked() as model:
            model.inject(TARGET, fault)
        for _ in range(100):
            opened = engine.store.list(target=TARGET)
            if opened:
                break
            await asyncio.sleep(0.2)
        assert opened, "no incident opened"
        incident = await engine.wait_settled(opened[0].id, timeout_s=240)
        with twin.locked() as model:
            twin_state = model.state(TARGET)
        latest = {s: engine.monitor.latest(TARGET, s) for s in engine.catalog}
        stats = engine.graph.stats()
        solution = engine.graph.get_solution(incident.decision.solution_id)
        return incident, twin_state, latest, stats, solution, engine.catalog
    finally:
        await engine.stop()
        engine.close()
        twin.stop()


def test_cache_saturation_is_fixed_by_a_real_playbook(loop_settings, graph):
    incident, twin_state, latest, stats, solution, catalog = asyncio.run(
        close_one_loop(loop_settings, "cache_saturation")
    )
    assert incident.state == State.resolved, incident.reason
    assert [t.to_state for t in incident.timeline] == [
        State.open,
        State.analyzed,
        State.decided,
        State.executing,
        State.verifying,
        State.resolved,
    ]
    # analyze: the rule named the cause with its evidence
    assert incident.report.top.fault == "cache_saturation"
    assert {e.series for e in incident.report.top.evidence} >= {"cache_hit_ratio"}
    # decide: a seed case of the same fault, above the similarity bar
    assert incident.decision.match.case_id.startswith("seed-cache-")
    assert incident.decision.match.similarity >= 0.8
    assert incident.decision.mode == DecisionMode.auto
    # execute: dry run changed nothing, the real run changed the twin
    execution = incident.execution
    assert execution.check_result.check_mode and execution.check_result.changed == 0
    assert execution.run.status == RunStatus.successful and execution.run.changed == 1
    # verify: the twin is repaired and its metrics are back within thresholds
    assert incident.verification.status == VerificationStatus.passed
    assert twin_state["faults"] == []
    assert [a["action"] for a in twin_state["actions"]] == ["scale_out_cache"]
    for check in incident.verification.checks:
        assert catalog[check.series].is_healthy(latest[check.series][1])
    # learn: the outcome is a new case and counts for the solution (the seed cases count too)
    assert stats["cases"] == len(load_cases()) + 1
    seeded = [c for c in load_cases() if c.solution_id == solution.id and c.outcome == "resolved"]
    assert solution.successes == len(seeded) + 1


def test_db_io_wait_gets_the_db_fix(loop_settings, graph):
    incident, twin_state, *_ = asyncio.run(close_one_loop(loop_settings, "db_io_wait"))
    assert incident.state == State.resolved, incident.reason
    assert incident.report.top.fault == "db_io_wait"
    assert incident.decision.solution_id == "sol-db-io-tune"
    assert [a["action"] for a in twin_state["actions"]] == ["tune_db_io"]
