"""The Incident table and its audit trail on a real SQL database: SQLite always, and
PostgreSQL when MENDLOOP_TEST_POSTGRES_URL names one (CI starts one)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from kernel.approval import Approval, ApprovalPlan, AutomationStatus
from kernel.errors import ConfigError, IllegalTransition
from kernel.models import (
    Decision,
    DecisionMode,
    Evidence,
    Finding,
    FindingKind,
    RCAReport,
    RootCause,
)
from kernel.state import State
from loop.db.engine import make_engine
from loop.ledger import Ledger
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
        mode=DecisionMode.auto,
        reason="r",
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
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        store.transition(incident_id, State.analyzed, bogus=finding())  # payloads are typed


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


def plan(incident_id: str, **changes) -> ApprovalPlan:
    fields = {
        "incident_id": incident_id,
        "solution_id": "sol-x",
        "title": "X",
        "risk": "high",
        "target": "t",
        "playbook": "x.yml",
        "extra_vars": {"target": "t", "n": 2},
        "hosts": ("localhost",),
        "check_mode": True,
        "check_status": "successful",
        "changed": 1,
        "changed_tasks": ("localhost: apply",),
        "rollback_playbook": "x_rollback.yml",
        "rollback_vars": {"target": "t", "n": 2},
    }
    return ApprovalPlan.build(**(fields | changes))


def test_plan_hash_covers_what_would_run_and_says_what_changed():
    a = plan("i")
    assert len(a.plan_hash) == 64 and a.plan_hash == plan("i").plan_hash  # canonical
    assert plan("i", requested_by="bob").plan_hash == a.plan_hash  # who asks: not run
    b = plan("i", extra_vars={"target": "t", "n": 3}, changed=0)
    assert b.plan_hash != a.plan_hash
    assert a.differences(b) == ["extra_vars.n: 2 -> 3", "changed: 1 -> 0"]
    assert plan("i", hosts=("a", "b")).plan_hash != a.plan_hash


def test_plan_and_approval_are_stored_and_cleared(store):
    incident_id = store.open_incident("t", [])
    for state in (State.analyzed, State.decided):
        store.transition(incident_id, state)
    the_plan = plan(incident_id)
    store.transition(incident_id, State.awaiting_approval, "ask", plan=the_plan)
    approval = Approval(by="alice", plan_hash=the_plan.plan_hash)
    view = store.transition(incident_id, State.approved, "ok", approval=approval)
    assert view.plan == the_plan and view.approval == approval
    view = store.transition(incident_id, State.awaiting_approval, "void", approval=None)
    assert view.approval is None and view.plan == the_plan


def test_an_older_database_gets_the_new_columns(tmp_path):
    """A database created before plans and approvals existed keeps working."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE incident (id VARCHAR(32) PRIMARY KEY, target VARCHAR(200) NOT NULL,"
                " state VARCHAR(32) NOT NULL, fault VARCHAR(200), reason VARCHAR NOT NULL,"
                " opened_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, findings JSON,"
                " report JSON, decision JSON, execution JSON, verification JSON)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO incident VALUES ('old1', 't', 'open', NULL, '', "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '[]', NULL, NULL, NULL, NULL)"
            )
        )
    engine.dispose()
    store = IncidentStore(url)
    assert store.get("old1").plan is None
    store.transition("old1", State.analyzed)
    store.close()


def test_pauses_are_kept_in_sql(store):
    ledger = Ledger(store.engine)
    assert ledger.automation() == AutomationStatus()
    ledger.pause("t1", "alice", "maintenance")
    ledger.pause(None, "bob")
    status = Ledger(store.engine).automation()  # a new ledger: what a restart sees
    assert status.paused and status.by == "bob" and status.since is not None
    assert [(p.target, p.by, p.reason) for p in status.targets] == [("t1", "alice", "maintenance")]
    assert status.pause_for("t2") == "automation paused everywhere by bob"
    assert ledger.resume(None) and not ledger.resume(None)
    status = ledger.automation()
    assert not status.paused and status.pause_for("t2") is None
    assert status.pause_for("t1") == "automation paused on t1 by alice: maintenance"
