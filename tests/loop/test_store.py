"""The Incident table and its audit trail on a real SQL database: SQLite always, and
PostgreSQL when MENDLOOP_TEST_POSTGRES_URL names one (CI starts one)."""

from datetime import UTC, datetime

import pytest

from loop.errors import ConfigError, IllegalTransition
from loop.models import Decision, DecisionMode, Evidence, Finding, FindingKind, RCAReport, RootCause
from loop.state import State
from loop.store import IncidentStore


def finding():
    return Finding(
        kind=FindingKind.rule,
        target="t",
        series=("cache_hit_ratio",),
        rule_id="r",
        started_at=1.0,
        score=0.9,
        evidence=(
            Evidence(
                series="cache_hit_ratio", value=0.4, threshold=0.7, direction="low", since=1.0
            ),
        ),
    )


def test_full_walk_is_audited_with_payloads(store):
    incident_id = store.open_incident("t", [finding()])
    report = RCAReport(
        incident_id=incident_id,
        target="t",
        latency_ms=1.5,
        candidates=(
            RootCause(
                fault="cache_saturation",
                component="cache",
                score=0.9,
                summary="s",
                evidence=finding().evidence,
            ),
        ),
    )
    store.transition(incident_id, State.analyzed, "rca", report=report, fault="cache_saturation")
    decision = Decision(
        incident_id=incident_id,
        solution_id="sol",
        playbook="p.yml",
        mode=DecisionMode.auto,
        reason="r",
        extra_vars={"target": "t"},
    )
    store.transition(incident_id, State.decided, "match", decision=decision)
    store.transition(incident_id, State.executing, "run")
    store.transition(incident_id, State.verifying, "verify")
    view = store.transition(incident_id, State.resolved, "ok")

    assert view.state == State.resolved and view.terminal
    assert view.report == report and view.decision == decision
    assert view.fault == "cache_saturation"
    assert view.findings == (finding(),)
    assert [t.to_state for t in view.timeline] == [
        State.open,
        State.analyzed,
        State.decided,
        State.executing,
        State.verifying,
        State.resolved,
    ]
    assert [t.note for t in view.timeline][1:] == ["rca", "match", "run", "verify", "ok"]
    stamps = [t.at for t in view.timeline]
    assert stamps == sorted(stamps) and all(s.tzinfo is not None for s in stamps)


def test_illegal_transition_changes_nothing(store):
    incident_id = store.open_incident("t", [])
    with pytest.raises(IllegalTransition):
        store.transition(incident_id, State.resolved)
    view = store.get(incident_id)
    assert view.state == State.open and len(view.timeline) == 1


def test_unfinished_overall_and_per_target(store):
    a = store.open_incident("t1", [])
    b = store.open_incident("t2", [])
    store.transition(b, State.escalated, "no", reason="no match")
    assert [i.id for i in store.unfinished()] == [a]
    assert [i.id for i in store.unfinished(target="t1")] == [a]
    assert store.unfinished(target="t2") == []
    assert store.get(b).reason == "no match"
    assert [i.id for i in store.list(state=State.escalated)] == [b]


def test_unknown_incident_and_payload(store):
    with pytest.raises(IllegalTransition, match="does not exist"):
        store.transition("nope", State.analyzed)
    incident_id = store.open_incident("t", [])
    with pytest.raises(TypeError, match="unknown payload"):
        store.transition(incident_id, State.analyzed, bogus=finding())


def test_state_survives_a_new_store_on_the_same_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    first = IncidentStore(url)
    incident_id = first.open_incident("t", [finding()])
    first.transition(incident_id, State.analyzed, "x")
    first.close()
    again = IncidentStore(url)
    assert again.get(incident_id).state == State.analyzed
    again.close()


def test_bad_database_url_is_a_config_error():
    with pytest.raises(ConfigError, match="not a database URL"):
        IncidentStore("definitely not a url")


def test_opened_at_is_kept(store):
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    incident_id = store.open_incident("t", [], opened_at=when)
    assert store.get(incident_id).opened_at == when
