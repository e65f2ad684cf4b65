"""Leases on a real PostgreSQL: workers split the targets, rebalance when one joins, take a
dead worker's targets after the TTL, and the fence refuses an old owner's writes."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from kernel.models import Finding, FindingKind, utcnow
from kernel.state import State
from loop.cluster.fence import LeaseFence, LeaseLost
from loop.cluster.leases import Leases, quota
from loop.ledger import Ledger
from loop.store import IncidentStore
from loop.transition import Transition

from .conftest import needs_postgres

pytestmark = needs_postgres
TTL = 1.0  # seconds: the SQL tests wait for expiry without waiting long


def workers(store: IncidentStore, *names: str, ttl: float = TTL) -> list[Leases]:
    out = []
    for name in names:
        leases = Leases(store.engine, name, ttl)
        leases.register("host", 1, f"http://{name}")
        out.append(leases)
    return out


def know(store: IncidentStore, targets: list[str]) -> None:
    with store.engine.begin() as conn:
        for target in targets:
            conn.execute(
                text(
                    "INSERT INTO target_lease (target, worker_id, expires_at, epoch) "
                    "VALUES (:t, NULL, now(), 0)"
                ),
                {"t": target},
            )


@pytest.fixture
def store(pg_url):
    store = IncidentStore(pg_url)
    yield store
    store.close()


def finding(target: str) -> Finding:
    return Finding(
        kind=FindingKind.rule,
        target=target,
        series=("cpu_usage",),
        rule_id="r",
        started_at=utcnow().timestamp(),
        score=1.0,
        evidence=(),
    )


def test_quota_is_the_ceiling_of_targets_over_workers() -> None:
    assert [quota(t, 2) for t in (0, 1, 2, 3, 4)] == [0, 1, 1, 2, 2]
    assert quota(5, 0) == 5  # no live worker counted yet: this one takes all


def test_two_workers_split_the_targets_and_rebalance_when_one_joins(store) -> None:
    targets = [f"t{i}" for i in range(6)]
    know(store, targets)
    (a,) = workers(store, "a")
    assert set(a.tick().held) == set(targets)  # alone: all of them
    (b,) = workers(store, "b")
    b_first = b.tick()  # a holds all: nothing free yet
    assert b_first.held == {} and b_first.quota == 3
    a_tick = a.tick()  # over quota: releases three (no incident in flight)
    assert len(a_tick.released) == 3 and len(a_tick.held) == 3
    b_tick = b.tick()
    assert set(b_tick.held) == set(a_tick.released)
    assert set(a.tick().held) | set(b.tick().held) == set(targets)
    assert not set(a.held) & set(b.held)


def test_a_target_with_an_incident_in_flight_is_not_released(store) -> None:
    know(store, ["t0", "t1"])
    (a,) = workers(store, "a")
    a.tick()
    store.open_incident("t0", [finding("t0")])
    store.open_incident("t1", [finding("t1")])
    workers(store, "b")
    tick = a.tick()
    assert tick.quota == 1 and tick.released == frozenset()  # both busy: kept
    assert set(tick.held) == {"t0", "t1"}


def test_a_dead_workers_targets_are_taken_after_the_ttl_with_a_new_epoch(store) -> None:
    know(store, ["t0", "t1"])
    (a,) = workers(store, "a")
    a.tick()  # alone: both
    first = dict(a.held)
    (b,) = workers(store, "b")
    b_before = b.tick()
    assert b_before.held == {}  # a holds both until its leases expire
    time.sleep(TTL * 1.5)  # a is "killed": it never renews again
    taken = b.tick()
    assert set(taken.held) == {"t0", "t1"} == set(taken.gained)
    assert all(taken.held[t] == first[t] + 1 for t in first)  # the fencing epoch moved on


def test_the_fence_refuses_the_old_owner_after_a_takeover(store) -> None:
    know(store, ["t0"])
    (a,) = workers(store, "a")
    a.tick()
    (b,) = workers(store, "b")
    incident_id = store.open_incident("t0", [finding("t0")])
    fence_a = LeaseFence("a", lambda t: a.held.get(t))  # a believes it still holds t0
    store.apply(incident_id, Transition(State.analyzed, "a's move while it holds t0"), fence_a)
    time.sleep(TTL * 1.5)
    assert "t0" in b.tick().held
    ledger = Ledger(store.engine)
    ledger.fence = fence_a
    with pytest.raises(LeaseLost):  # a paused then resumed: its run never begins
        ledger.begin_run(f"{incident_id}/x/run", incident_id, "run", "x.yml")
    with pytest.raises(LeaseLost):
        store.apply(incident_id, Transition(State.escalated, "a's late move"), fence_a)
    assert ledger.run(f"{incident_id}/x/run") is None
    assert store.get(incident_id).state == State.analyzed
    fence_b = LeaseFence("b", lambda t: b.held.get(t))
    ledger.fence = fence_b
    assert ledger.begin_run(f"{incident_id}/x/run", incident_id, "run", "x.yml")
    assert not ledger.begin_run(f"{incident_id}/x/run", incident_id, "run", "x.yml")  # key once
    assert fence_a.refused == 2


def test_claim_takes_a_new_target_under_quota_only(store) -> None:
    a, b = workers(store, "a", "b")
    a.tick(), b.tick()
    assert a.claim("n0") is not None  # 0 held < ceil(1/2)
    assert a.claim("n1") is None  # 1 held = ceil(2/2): known, left for b
    taken = b.tick()
    assert set(taken.held) == {"n1"}
    assert a.owners(["n0", "n1", "zz"]) == {
        "n0": a.owners(["n0"])["n0"],
        "n1": a.owners(["n1"])["n1"],
    }
    assert a.owners(["n1"])["n1"].api_url == "http://b"


def test_a_clean_leave_frees_the_leases_at_once(store) -> None:
    know(store, ["t0", "t1"])
    (a,) = workers(store, "a", ttl=60)
    a.tick()
    (b,) = workers(store, "b", ttl=60)
    a.leave()
    assert set(b.tick().held) == {"t0", "t1"}  # no need to wait for the 60 s TTL


class Walks:
    def __init__(self) -> None:
        self.dropped: list[frozenset[str]] = []
        self.spawned: list[str] = []

    def walking(self) -> set[str]:
        return set()

    def spawn(self, incident_id: str) -> None:
        self.spawned.append(incident_id)

    def drop(self, targets: frozenset[str]) -> None:
        self.dropped.append(targets)


def test_leases_not_renewed_in_time_are_dropped_before_anyone_may_take_them(store) -> None:
    import asyncio

    from loop.cluster.worker import ClusterWorker

    know(store, ["t0", "t1"])
    now = [1000.0]
    walks = Walks()
    worker = ClusterWorker(
        Leases(store.engine, "a", 30),
        store,
        walks,
        api_url="http://a",
        host="h",
        pid=1,
        clock=lambda: now[0],
    )
    worker.register()
    asyncio.run(worker.tick_once())
    assert worker.owns("t0") and worker.expire_if_due() == frozenset()
    now[0] += 29.0  # renewals failing: still inside the TTL
    assert worker.owns("t0") and walks.dropped == []
    now[0] += 2.0  # past it: another worker may take over now
    assert worker.expire_if_due() == frozenset({"t0", "t1"})
    assert walks.dropped == [frozenset({"t0", "t1"})] and not worker.owns("t0")
    asyncio.run(worker.tick_once())  # SQL back in time: still ours in the database
    assert worker.owns("t0") and worker.held() == {"t0": 1, "t1": 1}


def test_rebalance_releases_idle_targets_and_keeps_the_busy_one(store) -> None:
    know(store, ["t0", "t1", "t2", "t3"])
    (a,) = workers(store, "a")
    a.tick()
    store.open_incident("t0", [finding("t0")])  # the first in order: in flight
    workers(store, "b")
    tick = a.tick()
    assert tick.quota == 2 and len(tick.released) == 2 and "t0" not in tick.released
    assert "t0" in tick.held and len(tick.held) == 2
