"""Admission under a flood: incidents opened per minute and concurrent playbook steps are
bounded, a real fault on an established target goes first, and every finding is accounted
for (opened, held, joined, or dropped and counted), never lost silently."""

from __future__ import annotations

import asyncio
import time

import pytest

from loop.admission import Admission, RunGate, Standing, rank
from loop.models import Evidence, Finding, FindingKind
from rules.spec import Severity

from .test_resilience import BROKEN, Running, wait_for

OUTCOMES = ("opened", "joined", "dropped_full", "rule_gone", "failed", "duplicate")


def finding(target: str, rule: str = "r1") -> Finding:
    return Finding(
        kind=FindingKind.rule,
        target=target,
        series=("cache_hit_ratio",),
        rule_id=rule,
        started_at=0.0,
        score=0.9,
        evidence=(
            Evidence(series="cache_hit_ratio", value=0.1, threshold=0.5, direction="low", since=0),
        ),
    )


def accounted(admission: Admission) -> int:
    """Every finding offered ends somewhere that is counted (or is still held)."""
    return len(admission) + sum(admission.counts[o] for o in OUTCOMES)


def test_ranks_put_established_targets_then_severity_first() -> None:
    assert rank(True, Severity.warning, 9.0) < rank(False, Severity.critical, 1.0)
    assert rank(False, Severity.critical, 9.0) < rank(False, Severity.major, 1.0)
    assert rank(False, Severity.major, 1.0) < rank(False, Severity.major, 2.0)
    assert rank(False, None, 1.0) > rank(False, Severity.warning, 9.0)  # unknown rule: last


def test_standing_counts_from_the_first_arrival() -> None:
    now = [100.0]
    standing = Standing(60.0, clock=lambda: now[0])
    standing.seen(["a"])
    now[0] += 61
    standing.seen(["a", "b"])  # a second arrival does not make "a" newer
    assert standing.established("a") and not standing.established("b")
    assert not standing.established("never-seen")
    assert standing.keep_only(["b"]) == 1 and len(standing) == 1


def test_a_full_held_set_drops_the_lowest_rank_and_counts_it() -> None:
    admission = Admission(held_max=3, opens_per_minute=10)
    for i in range(3):
        assert admission.hold(finding(f"new-{i}"), rank(False, Severity.minor, i))
    assert not admission.hold(finding("new-0"), rank(False, Severity.minor, 9))  # duplicate
    assert not admission.hold(finding("worse"), rank(False, Severity.warning, 10))  # refused
    assert admission.hold(finding("real"), rank(True, Severity.major, 11))  # evicts new-2
    targets = [t for t, _ in admission.by_rank()]
    assert targets == ["real", "new-0", "new-1"]
    assert admission.counts["dropped_full"] == 2 and admission.counts["duplicate"] == 1
    assert accounted(admission) == 6  # offered: 6


def test_the_budget_of_opens_per_minute() -> None:
    now = [0.0]
    admission = Admission(held_max=10, opens_per_minute=2, clock=lambda: now[0])
    assert admission.budget() == 2 and admission.budget_in() == 0
    admission.opened()
    now[0] = 10.0
    admission.opened()
    assert admission.budget() == 0 and admission.budget_in() == pytest.approx(50.0)
    now[0] = 60.0
    assert admission.budget() == 1
    now[0] = 70.0
    assert admission.budget() == 2


def test_the_run_gate_bounds_holders_and_lets_the_best_rank_in_first() -> None:
    async def main() -> tuple[RunGate, list[str]]:
        gate = RunGate(slots=2)
        release = asyncio.Event()
        order: list[str] = []

        async def holder(name: str, r: tuple[int, int, float]) -> None:
            async with gate.slot(r):
                order.append(name)
                await release.wait()

        first = [
            asyncio.create_task(holder(f"early-{i}", rank(False, "minor", i))) for i in range(2)
        ]
        await asyncio.sleep(0)
        waiting = [
            asyncio.create_task(holder(f"bogus-{i}", rank(False, "minor", 10 + i)))
            for i in range(4)
        ]
        doomed = asyncio.create_task(holder("cancelled", rank(True, "critical", 0)))
        real = asyncio.create_task(holder("real", rank(True, "major", 20)))
        await asyncio.sleep(0)
        assert gate.busy == 2 and gate.waiting == 6
        doomed.cancel()  # a walk stopped while it waited must not keep a slot
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*first, *waiting, real, return_exceptions=True)
        return gate, order

    gate, order = asyncio.run(main())
    assert gate.peak == 2 and gate.busy == 0 and gate.waiting == 0
    assert order[:3] == ["early-0", "early-1", "real"]  # the real fault next, not the 4 bogus
    assert "cancelled" not in order and len(order) == 7


@pytest.mark.neo4j
def test_a_flood_of_new_targets_opens_within_the_budget_and_the_real_fault_first(
    make_settings, graph
) -> None:
    settings = make_settings(
        shadow="all",
        loop_max_opens_per_minute=5,
        loop_held_max=30,
        loop_max_concurrent_runs=2,
        loop_established_s=3600,
    )
    run = Running(settings)
    engine = run.engine
    now = [time.monotonic()]
    engine.standing.clock = lambda: now[0]  # time is the one thing a test may move
    quiet = {"cache_utilization_pct": 40.0, "cache_hit_ratio": 0.95, "db_penetration_pct": 1.0}
    t0 = int(time.time())
    engine.submit(  # real-1 has reported for more than an hour ...
        [
            {"series": s, "labels": {"target": "real-1"}, "ts": t0 - 20, "value": v}
            for s, v in quiet.items()
        ]
    )
    now[0] += 3601
    for i in range(40):  # ... the 40 bogus targets are new; all 41 faults arrive together
        for ts in range(t0 - 5, t0):
            engine.submit(
                [
                    {"series": s, "labels": {"target": f"bogus-{i}"}, "ts": ts, "value": v}
                    for s, v in BROKEN.items()
                ]
            )
    for ts in range(t0 - 5, t0):
        engine.submit(
            [
                {"series": s, "labels": {"target": "real-1"}, "ts": ts, "value": v}
                for s, v in BROKEN.items()
            ]
        )
    with run:
        wait_for(lambda: engine.admission.counts["opened"] == 5, "the minute's budget used")
        wait_for(lambda: all(i.terminal for i in engine.store.list()), "the opened ones walked")
        opened = {i.target for i in engine.store.list()}
        assert len(opened) == 5 and "real-1" in opened  # arrived last, opened first
        counts = engine.admission.counts
        assert counts["dropped_full"] == 11 and len(engine.admission) == 25
        assert counts["deferred"] >= 25
        assert accounted(engine.admission) == 41
        assert engine.run_gate.admitted >= 5 and engine.run_gate.peak <= 2
        metrics = run.client.get("/metrics").text
        assert 'mendloop_loop_findings_total{outcome="dropped_full"} 11.0' in metrics
        assert "mendloop_findings_held 25.0" in metrics
        ok, detail = engine.loop_health()
        assert ok and "25 finding(s) held" in detail
