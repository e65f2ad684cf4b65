"""Locks on real components: two faults on two targets are remediated at the same time;
two faults on one target are remediated one after the other (per-target lock).

The playbooks involved wait for a gate file after doing their work, so "at the same
time" is observed (both runs started and neither ended) rather than inferred from
timings; the serialised pair is checked from the recorded run intervals.
"""

from __future__ import annotations

import time

import pytest

from kernel.state import State

from .conftest import LoopHarness, empty_graph, gated_site, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]

GATED = ("cache_scale_out.yml", "db_io_tune.yml", "edge_capacity.yml", "harmonic_filter.yml")


def open_runs(loop: LoopHarness, incident_id: str) -> list[str]:
    """Phases of the incident's real runs that started and have not ended."""
    return [
        r.phase
        for r in loop.engine.ledger.runs(incident_id)
        if r.phase.startswith("run") and r.ended_at is None
    ]


def wait_for(predicate, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.2)


def test_two_targets_run_concurrently_one_target_serialises(neo4j_settings, tmp_path) -> None:
    empty_graph(neo4j_settings)
    gate = tmp_path / "gate"
    site = gated_site(tmp_path / "site", gate, GATED)  # the twin's URL: LoopHarness's
    settings = settings_for(neo4j_settings, tmp_path / "var", site=site, verify_hold_s=3.0)
    with LoopHarness(settings, ["conc-1", "conc-2", "same-1"]) as loop:
        time.sleep(2)  # a healthy baseline first
        loop.inject("conc-1", "cache_saturation")
        loop.inject("conc-2", "db_io_wait")
        loop.inject("same-1", "edge_cpu_saturation")
        loop.inject("same-1", "harmonic_distortion")
        a, b = loop.wait_opened("conc-1"), loop.wait_opened("conc-2")
        # two targets: both real runs are in progress at once
        wait_for(lambda: open_runs(loop, a) and open_runs(loop, b), "both runs in progress")
        # one target: its second incident waits while the first one's run is held
        wait_for(lambda: len(loop.engine.store.list(target="same-1")) == 2, "two incidents")
        first, second = None, None
        while first is None:
            same = loop.engine.store.list(target="same-1")
            held = [i for i in same if open_runs(loop, i.id)]
            if held:
                first = held[0]
                (second,) = [i for i in same if i.id != first.id]
            time.sleep(0.2)
        assert loop.engine.ledger.runs(second.id) == []
        assert loop.engine.store.get(second.id).state == State.open  # waits for the lock
        gate.touch()
        settled = {i: loop.wait_settled(i) for i in (a, b, first.id, second.id)}

    for incident in settled.values():
        assert incident.state == State.resolved, incident.reason
    runs_first = {r.phase: r for r in loop.engine.ledger.runs(first.id)}
    runs_second = {r.phase: r for r in loop.engine.ledger.runs(second.id)}
    assert runs_second["check"].started_at >= runs_first["run"].ended_at
    assert {settled[first.id].fault, settled[second.id].fault} == {
        "edge_cpu_saturation",
        "harmonic_distortion",
    }
