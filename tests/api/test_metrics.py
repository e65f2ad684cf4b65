"""The API's Prometheus metrics on their own: stage timings from stage events, a registry per
app (two apps in one process never clash), gauges read from a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import ApiMetrics, LoopProbe
from kernel.state import State
from loop.events import StageEvent
from loop.store import IncidentStore

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    store = IncidentStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield store
    store.close()


def samples(metrics: ApiMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def event(state: State | None, seconds: float, incident: str = "i1", kind: str = "incident"):
    return StageEvent(incident, "site", state, "", T0 + timedelta(seconds=seconds), kind)


def test_stage_seconds_from_consecutive_stages(store) -> None:
    metrics = ApiMetrics(store)
    metrics.on_stage(event(State.open, 0))
    metrics.on_stage(event(State.analyzed, 0.5))
    metrics.on_stage(event(State.analyzed, 0.9))  # a step within the stage: not a move
    metrics.on_stage(event(None, 1.0, incident="", kind="automation"))  # paused: no incident
    metrics.on_stage(event(State.decided, 2.5))
    got = samples(metrics)
    opened = (("from_state", "open"), ("to_state", "analyzed"))
    decided = (("from_state", "analyzed"), ("to_state", "decided"))
    assert got[("mendloop_stage_seconds_sum", opened)] == pytest.approx(0.5)
    assert got[("mendloop_stage_seconds_sum", decided)] == pytest.approx(2.0)
    assert got[("mendloop_stage_seconds_count", decided)] == 1.0
    assert not any(
        ("from_state", "analyzed") in k[1] and ("to_state", "analyzed") in k[1] for k in got
    )


def test_incidents_by_state_and_two_apps_apart(store) -> None:
    for _ in range(2):
        store.open_incident("site", [])
    escalated = store.open_incident("site", [])
    store.transition(escalated, State.escalated, "x")
    first, second = ApiMetrics(store), ApiMetrics(store)
    first.observe_request("GET", "/v1/incidents", 200, 0.01)
    got = samples(first)
    assert got[("mendloop_incidents", (("state", "open"),))] == 2.0
    assert got[("mendloop_incidents", (("state", "escalated"),))] == 1.0
    labels = (("method", "GET"), ("route", "/v1/incidents"), ("status", "200"))
    assert got[("mendloop_api_requests_total", labels)] == 1.0
    assert ("mendloop_api_requests_total", labels) not in samples(second)


def test_loop_probe_of_an_app_without_an_engine() -> None:
    probe = LoopProbe(None)  # create_app(store) alone: nothing runs
    assert probe.status() == (False, "the engine loop is not running")
