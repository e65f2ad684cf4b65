"""Admission under a flood: incidents opened per minute and concurrent playbook steps are
bounded, a real fault on an established target goes first, and every finding is accounted
for (opened, held, joined, or dropped and counted), never lost silently."""

from __future__ import annotations

import asyncio
import time

import pytest

from kernel.models import Evidence, Finding, FindingKind
from loop.admission import Admission, RunGate, Standing, rank
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
    targets = [t for t, _, _ in admission.by_rank()]
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


def test_new_targets_get_half_of_the_minute_a_known_one_the_rest() -> None:
    now = [0.0]
    admission = Admission(held_max=10, opens_per_minute=4, clock=lambda: now[0])
    admission.opened(established=False)
    now[0] = 5.0
    admission.opened(established=False)
    assert admission.budget(established=False) == 0 and admission.budget(established=True) == 2
    assert admission.budget_in(established=False) == pytest.approx(55.0)
    assert admission.budget_in(established=True) == 0
    admission.opened(established=True)
    admission.opened(established=True)
    assert admission.budget(established=True) == 0
    assert admission.budget_in(established=True) == pytest.approx(55.0)  # the oldest: t=0
    now[0] = 60.0  # the first new one left the window
    assert admission.budget(established=False) == 1 and admission.budget(established=True) == 1


def test_the_run_gate_bounds_holders_and_keeps_a_slot_for_a_known_target() -> None:
    async def main() -> tuple[RunGate, list[str], int, int]:
        gate = RunGate(slots=3)  # new targets: 2 of them at most
        release = asyncio.Event()
        order: list[str] = []

        async def holder(name: str, r: tuple[int, int, float]) -> None:
            async with gate.slot(r):
                order.append(name)
                await release.wait()

        new = rank(False, "minor", 0)
        tasks = [asyncio.create_task(holder(f"early-{i}", new)) for i in range(2)]
        await asyncio.sleep(0)
        tasks += [
            asyncio.create_task(holder(f"bogus-{i}", rank(False, "critical", i))) for i in range(4)
        ]
        doomed = asyncio.create_task(holder("cancelled", rank(False, "critical", 0)))
        await asyncio.sleep(0)
        busy_before = gate.busy  # 2: the third slot is kept for a known target
        doomed.cancel()  # a walk stopped while it waited must not keep a slot
        tasks.append(asyncio.create_task(holder("real", rank(True, "major", 99))))
        await asyncio.sleep(0)
        busy_with_real = gate.busy
        release.set()
        await asyncio.gather(*tasks, doomed, return_exceptions=True)
        return gate, order, busy_before, busy_with_real

    gate, order, busy_before, busy_with_real = asyncio.run(main())
    assert busy_before == 2 and busy_with_real == 3
    assert order[:3] == ["early-0", "early-1", "real"]  # the real fault at once, not after 4
    assert gate.peak == 3 and gate.busy == gate.busy_new == 0 and gate.waiting == 0
    assert "cancelled" not in order and len(order) == 7


@pytest.mark.neo4j
def test_a_flood_of_new_targets_leaves_room_for_the_real_fault(make_settings, graph) -> None:
    """40 new targets' faults, then a fault on a target known for an hour: the bogus ones
    use their half of the minute's budget, the real one is opened at once, nothing is
    lost silently."""
    settings = make_settings(
        shadow="all",
        loop_max_opens_per_minute=5,  # new targets: 2 a minute
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
    engine.submit(  # real-1 has reported for more than an hour
        [
            {"series": s, "labels": {"target": "real-1"}, "ts": t0 - 20, "value": v}
            for s, v in quiet.items()
        ]
    )
    now[0] += 3601
    for i in range(40):  # the flood's faults, all at once when the loop starts
        for ts in range(t0 - 5, t0):
            engine.submit(
                [
                    {"series": s, "labels": {"target": f"bogus-{i}"}, "ts": ts, "value": v}
                    for s, v in BROKEN.items()
                ]
            )
    with run:
        wait_for(lambda: engine.admission.counts["opened"] == 2, "the new targets' share used")
        assert engine.admission.budget(established=False) == 0
        for ts in range(t0 - 5, t0):  # now the real fault
            engine.submit(
                [
                    {"series": s, "labels": {"target": "real-1"}, "ts": ts, "value": v}
                    for s, v in BROKEN.items()
                ]
            )
        wait_for(lambda: engine.store.list(target="real-1"), "the real fault opened")
        wait_for(lambda: all(i.terminal for i in engine.store.list()), "the opened ones walked")
        opened = [i.target for i in engine.store.list()]
        assert len(opened) == 3 and "real-1" in opened
        counts = engine.admission.counts
        assert counts["dropped_full"] == 10 and len(engine.admission) == 28
        assert counts["deferred"] >= 28
        assert accounted(engine.admission) == 41
        assert engine.run_gate.admitted >= 3 and engine.run_gate.peak <= 2
        metrics = run.client.get("/metrics").text
        assert 'mendloop_loop_findings_total{outcome="dropped_full"} 10.0' in metrics
        assert "mendloop_findings_held 28.0" in metrics
        ok, detail = engine.loop_health()
        assert ok and "28 finding(s) held" in detail
