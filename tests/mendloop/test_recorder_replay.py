"""Incident recordings (loop/recorder.py) and replay from raw samples (mendloop/replay.py),
on the real twin, the real Monitor and Analyzer (durable_rules) and the shipped rules."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kernel.config import REPO_ROOT
from kernel.state import State
from loop.events import StageEvent
from loop.monitor import Monitor
from loop.recorder import IncidentRecorder, recording_path
from loop.store import IncidentStore
from mendloop.replay import first_report
from mendloop.rules_tester import twin_batches, window_batches
from rules.catalog import load_catalog
from rules.compiler import load_rules
from twin.model import Twin

TARGET = "pm-site-1"
START = 1_800_000_000.0
WARMUP_S = 40


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(REPO_ROOT / "packs" / "power-marketing" / "metrics.yaml")


@pytest.fixture(scope="module")
def rules(catalog):
    return load_rules(catalog, REPO_ROOT / "packs" / "power-marketing" / "rules")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def record_fault(tmp_path: Path, catalog, fault: str) -> tuple[Path, float, float]:
    """Run the twin with ``fault`` through a Monitor, record the incident like the daemon
    does (open at the fault's injection + 8 s, resolved at the end); -> file, open, end."""
    clock = Clock()
    monitor = Monitor(catalog, clock=clock)
    recorder = IncidentRecorder(monitor, tmp_path / "recordings", pre_s=30)
    opened_at = START + WARMUP_S + 8
    for now, batch in twin_batches(fault, target=TARGET, seconds=40, warmup_s=WARMUP_S):
        clock.now = now
        monitor.ingest(batch)
        if now == opened_at:
            at = datetime.fromtimestamp(now, UTC)
            recorder(StageEvent("inc1", TARGET, State.open, "1 rule finding(s)", at))
        if now == opened_at + 10:
            at = datetime.fromtimestamp(now, UTC)
            recorder(StageEvent("inc1", TARGET, State.analyzed, "root cause", at))
    recorder(StageEvent("inc1", TARGET, State.resolved, "ok", datetime.fromtimestamp(now, UTC)))
    recorder.flush()
    recorder.close()
    return recorder.path("inc1"), opened_at, now


def test_a_recording_holds_every_series_from_before_the_opening_to_the_end(tmp_path, catalog):
    path, opened_at, end = record_fault(tmp_path, catalog, "voltage_sag")
    with gzip.open(path, "rt") as recording:
        rows = [json.loads(line) for line in recording]
    stamps = sorted({r["ts"] for r in rows})
    assert stamps[0] == opened_at - 30 + 1  # pre_s of healthy context, nothing older
    assert stamps[-1] == end  # the later snapshots appended what came after
    assert len(stamps) == len(set(stamps)) == end - (opened_at - 30)  # no gap, no duplicate
    assert {r["series"] for r in rows} == set(catalog)  # all 286 series of the target
    assert {r["target"] for r in rows} == {TARGET}
    # the file is a replayable window as `mendloop rules test --window` reads it
    batches = window_batches(path)
    assert len(batches) == len(stamps) and len(batches[0][1]) == len(catalog)


def test_recording_ids_cannot_escape_the_directory(tmp_path):
    with pytest.raises(ValueError):
        recording_path(tmp_path, "../../etc/passwd")


def test_replay_from_samples_detects_and_explains_like_the_daemon(tmp_path, catalog, rules):
    path, opened_at, _ = record_fault(tmp_path, catalog, "voltage_sag")
    store = IncidentStore(f"sqlite:///{tmp_path / 'replay.db'}")
    try:
        incident = store.get(store.open_incident(TARGET, []))
        report, fired_at = first_report(incident, window_batches(path), catalog, rules)
        assert report is not None and report.top is not None
        assert report.top.fault == "voltage_sag"
        assert opened_at - 30 < fired_at <= opened_at + 10  # in the recorded fault, not before

        # a change under test that drops the rules naming the fault: replay says so
        without = [r for r in rules if "voltage_sag" not in r.faults]
        report, fired_at = first_report(incident, window_batches(path), catalog, without)
        assert report is None or report.top is None or report.top.fault != "voltage_sag"
    finally:
        store.close()


def test_a_healthy_recording_opens_nothing(tmp_path, catalog, rules):
    path, _, _ = record_fault(tmp_path, catalog, "voltage_sag")
    healthy = tmp_path / "healthy.jsonl"
    with gzip.open(path, "rt") as recording:
        rows = [line for line in recording if json.loads(line)["ts"] <= START + WARMUP_S]
    healthy.write_text("".join(rows))
    store = IncidentStore(f"sqlite:///{tmp_path / 'replay.db'}")
    try:
        incident = store.get(store.open_incident(TARGET, []))
        report, fired_at = first_report(incident, window_batches(healthy), catalog, rules)
        assert (report, fired_at) == (None, None)
    finally:
        store.close()


def record_two(tmp_path: Path, catalog, pre_s: float = 120.0) -> dict:
    """Two incidents on one target, the second opening 12 s after the first ended (the
    first fault's samples are inside the second's ``pre_s``), recorded like the daemon."""
    clock = Clock()
    monitor = Monitor(catalog, clock=clock)
    recorder = IncidentRecorder(monitor, tmp_path / "recordings", pre_s=pre_s)
    twin = Twin(targets=(TARGET,), seed=0)
    marks = {
        "first_fault": START + 41,
        "first_open": START + 48,
        "first_clear": START + 70,
        "first_end": START + 78,
        "second_fault": START + 82,
        "second_open": START + 90,
        "second_end": START + 110,
    }
    raw = []
    events = {
        marks["first_open"]: ("inc1", State.open),
        marks["first_end"]: ("inc1", State.resolved),
        marks["second_open"]: ("inc2", State.open),
        marks["second_end"]: ("inc2", State.resolved),
    }
    for tick in range(1, 111):
        now = START + tick
        clock.now = now
        if now == marks["first_fault"]:
            twin.inject(TARGET, "voltage_sag", now=now - 1)
        if now == marks["first_clear"]:
            twin.clear(TARGET, now=now)
        if now == marks["second_fault"]:
            twin.inject(TARGET, "harmonic_distortion", now=now - 1)
        batch = twin.step(now)
        raw.append((now, batch))
        monitor.ingest(batch)
        if now in events:
            incident, state = events[now]
            recorder(StageEvent(incident, TARGET, state, "", datetime.fromtimestamp(now, UTC)))
    recorder.flush()
    recorder.close()
    return {"recorder": recorder, "raw": raw, **marks}


def test_a_recording_starts_after_the_previous_incident_on_its_target(tmp_path, catalog, rules):
    run = record_two(tmp_path, catalog)
    path = run["recorder"].path("inc2")
    with gzip.open(path, "rt") as recording:
        stamps = sorted({json.loads(line)["ts"] for line in recording})
    assert stamps[0] > run["first_end"]  # nothing of the first incident in the second's
    assert stamps[0] >= run["second_open"] - 120  # and its pre_s bound still holds
    store = IncidentStore(f"sqlite:///{tmp_path / 'replay.db'}")
    try:
        incident = store.get(store.open_incident(TARGET, []))
        report, fired_at = first_report(incident, window_batches(path), catalog, rules)
        # the replay explains the second incident by its own fault: "unchanged"
        assert report is not None and report.top is not None
        assert report.top.fault == "harmonic_distortion"
        assert fired_at is not None and fired_at >= run["second_fault"]
        # the same 120 s taken without the bound start inside the first fault, and a
        # replay of them names the first incident's fault: what the bound prevents
        unbounded = [(t, b) for t, b in run["raw"] if run["second_open"] - 120 < t]
        report, _ = first_report(incident, unbounded, catalog, rules)
        assert report is not None and report.top is not None
        assert report.top.fault == "voltage_sag"
    finally:
        store.close()


def test_after_a_restart_the_store_says_where_the_previous_incident_ended(tmp_path, catalog):
    clock = Clock()
    monitor = Monitor(catalog, clock=clock)
    ended = START + 100
    recorder = IncidentRecorder(
        monitor, tmp_path / "r", pre_s=120, previous_end=lambda target: ended
    )
    clock.now = START + 150
    assert recorder.start_of(TARGET) == ended
    clock.now = START + 400
    assert recorder.start_of(TARGET) == START + 400 - 120
    recorder.close()
