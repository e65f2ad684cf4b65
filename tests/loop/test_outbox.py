"""Neo4j down while an incident is verified: the outcome (its case, the solution's track
record) waits in the SQL outbox and reaches the graph once the real local Neo4j is back;
an outcome the graph refuses for its content leaves the queue instead of blocking it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kernel.models import Case, Decision, DecisionMode, Execution, RunStatus, utcnow
from kernel.state import State
from loop.outbox import OutcomeOutbox
from loop.store import IncidentStore
from mendloop import local_neo4j
from mendloop.service import build_engine

from ..conftest import analyzed

pytestmark = pytest.mark.neo4j
HEALTHY = {"cache_utilization_pct": 55.0, "cache_hit_ratio": 0.95, "db_penetration_pct": 1.0}
SOLUTION = "sol-cache-scale-out"


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 240) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.3)


def verifying(engine: Any, target: str) -> str:
    """An incident whose fix ran a moment ago and now waits for verification."""
    incident_id = analyzed(engine, target)
    spec = engine.library[SOLUTION]
    decision = Decision(
        incident_id=incident_id,
        solution_id=SOLUTION,
        mode=DecisionMode.auto,
        reason="test",
    )
    now = utcnow()
    execution = Execution(
        id="x1",
        incident_id=incident_id,
        playbook=spec.playbook,
        check_result=None,
        run=None,
        status=RunStatus.successful,
        started=now,
        ended=now,
    )
    engine.store.transition(incident_id, State.decided, "test", decision=decision)
    engine.store.transition(incident_id, State.executing, "test")
    engine.store.transition(incident_id, State.verifying, "test", execution=execution)
    return incident_id


def test_neo4j_down_while_verifying_loses_no_outcome(make_settings, graph, neo4j_settings) -> None:
    if not neo4j_settings.uses_local_neo4j:
        pytest.skip("needs the local test Neo4j, which this test stops and starts")
    settings = make_settings(verify_hold_s=1.0, verify_timeout_s=300, loop_retry_max_s=3.0)
    engine = build_engine(settings, progress=lambda _: None)
    before = engine.graph.get_solution(SOLUTION)
    incident_id = verifying(engine, "outbox-1")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    stop_pushing = threading.Event()

    def push_healthy() -> None:  # the fix worked: the target reports healthy values
        while not stop_pushing.wait(0.5):
            engine.submit(
                [
                    {"series": s, "labels": {"target": "outbox-1"}, "ts": time.time(), "value": v}
                    for s, v in HEALTHY.items()
                ]
            )

    pusher = threading.Thread(target=push_healthy, daemon=True)
    local_neo4j.stop(neo4j_settings)
    try:
        thread.start()
        asyncio.run_coroutine_threadsafe(engine.start(), loop).result(60)
        pusher.start()
        resolved = wait_for(
            lambda: (i := engine.store.get(incident_id)).terminal and i, "verified without Neo4j"
        )
        assert resolved.state == State.resolved, resolved.reason
        assert engine.outbox.count_pending() == 1  # the outcome waits, in SQL
        held = engine.outbox.get(f"incident-{incident_id}")
        assert held is not None and held.attempts >= 1 and "Neo4j" in held.last_error
        wait_for(lambda: engine.health.failures["neo4j"] >= 2, "retried while Neo4j is away")
        ok, detail = engine.loop_health()
        assert not ok and "neo4j: failing" in detail
    finally:
        local_neo4j.start(neo4j_settings)
    try:
        wait_for(lambda: engine.outbox.count_pending() == 0, "delivered once Neo4j is back")
        case = engine.graph.get_case(f"incident-{incident_id}")
        assert case is not None and case.outcome == "resolved" and case.solution_id == SOLUTION
        after = engine.graph.get_solution(SOLUTION)
        assert after.successes == before.successes + 1
        assert engine.outbox.get(f"incident-{incident_id}").delivered_at is not None
        wait_for(lambda: engine.loop_health()[0], "the loop says it works again")
    finally:
        stop_pushing.set()
        asyncio.run_coroutine_threadsafe(engine.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        engine.close()


def test_an_outcome_the_graph_refuses_does_not_block_the_queue(make_settings, graph) -> None:
    engine = build_engine(make_settings(), progress=lambda _: None)
    try:
        decision = Decision(
            incident_id="r1",
            solution_id="sol-nobody-knows",
            mode="auto",
            reason="t",
        )
        bad = Case(
            id="incident-r1",
            title="t",
            text="no such solution",
            fault="cache_saturation",
            solution_id="sol-nobody-knows",
            target="r-1",
        )
        good = bad.model_copy(update={"id": "incident-r2", "solution_id": SOLUTION})
        engine.outbox.put("r1", bad, decision)
        engine.outbox.put("r2", good, decision.model_copy(update={"solution_id": SOLUTION}))

        async def deliver() -> None:
            task = asyncio.create_task(engine.delivery.run())
            await asyncio.to_thread(
                wait_for, lambda: engine.outbox.count_pending() == 0, "the queue drained"
            )
            task.cancel()

        asyncio.run(deliver())
        refused = engine.outbox.get("incident-r1")
        assert (
            refused.refused
            and refused.delivered_at is None
            and "sol-nobody-knows" in refused.last_error
        )
        assert engine.outbox.get("incident-r2").delivered_at is not None
        assert engine.graph.get_case("incident-r2") is not None
    finally:
        engine.close()


def test_the_outbox_queues_each_outcome_once(tmp_path) -> None:
    store = IncidentStore(f"sqlite:///{tmp_path / 'o.db'}")
    try:
        outbox = OutcomeOutbox(store.engine)
        case = Case(id="incident-a", title="t", text="x", fault="f", solution_id="s")
        decision = Decision(
            incident_id="a", solution_id="s", mode="auto", reason="r"
        )
        outbox.put("a", case, decision)
        outbox.put("a", case.model_copy(update={"text": "again"}), decision)  # a resumed walk
        (item,) = outbox.pending()
        assert item.case.text == "x" and item.decision == decision
        outbox.attempt_failed("incident-a", "Neo4j is not reachable")
        assert outbox.count_pending() == 1 and outbox.get("incident-a").attempts == 1
        outbox.delivered("incident-a")
        assert outbox.pending() == [] and outbox.count_pending() == 0
    finally:
        store.close()
