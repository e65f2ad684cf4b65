"""A real fault that breaks out while SQLite is write-locked by another process for longer
than its busy timeout, end to end: the twin breaks, the rule fires, the loop cannot write
the incident and holds the finding (/readyz says the store fails, the twin's pushes keep
being taken); once the lock is released the incident is opened, the real playbook runs
against the twin and verification passes. A second fault afterwards is fixed as well."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from kernel.state import State

from .conftest import LoopHarness, empty_graph, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]


def fixed(loop: LoopHarness, target: str) -> State:
    incident = loop.wait_settled(loop.wait_opened(target))
    if incident.state == State.awaiting_approval:
        assert loop.approve(incident.id).status_code == 200
        incident = loop.wait_settled(incident.id)
    return incident.state


def test_a_fault_during_a_sqlite_lock_is_fixed_once_the_lock_goes(neo4j_settings, tmp_path):
    empty_graph(neo4j_settings)
    settings = settings_for(
        neo4j_settings,
        tmp_path / "var",
        verify_hold_s=3.0,
        verify_timeout_s=60.0,
        loop_retry_max_s=2.0,
    )
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    with LoopHarness(settings, ["outage-1", "outage-2"]) as loop:
        engine = loop.engine
        assert engine is not None
        time.sleep(2)  # a healthy baseline first
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            loop.inject("outage-1", "cache_saturation")
            deadline = time.monotonic() + 120
            while engine.health.failures["sql"] < 2 or not len(engine.admission):
                assert time.monotonic() < deadline, "the loop never tried to open the incident"
                time.sleep(0.3)
            ok, detail = engine.loop_health()  # what /readyz's loop check says
            assert not ok and "sql: failing" in detail, detail
            assert httpx.get(f"{loop.api_url}/healthz", timeout=30).status_code == 200
            accepted = engine.monitor.stats()["counters"]["accepted"]
            time.sleep(1.5)  # the twin pushes every 0.5 s: intake goes on meanwhile
            assert engine.monitor.stats()["counters"]["accepted"] > accepted
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert fixed(loop, "outage-1") == State.resolved
        assert loop.twin_state("outage-1")["faults"] == []
        loop.inject("outage-2", "cache_saturation")  # the loop still takes new faults
        assert fixed(loop, "outage-2") == State.resolved
