"""The REST API over a real, running Engine: Neo4j over Bolt, SQLite, the real embedder and
rules, tokens on. Knowledge search (text, incident), case CRUD and import, solutions with
track record and autonomy, rules, catalog, automation pause/resume, incident actions and
their error mapping, readyz (and readyz with Neo4j down), /metrics.

The engine runs in shadow mode: a decision is recorded and escalated, never executed, so
nothing here runs a playbook (tests/loop and tests/e2e do)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from neo4j import GraphDatabase

from api.app import app_for
from api.auth import Auth, Role
from kernel.approval import ApprovalPlan
from kernel.config import Settings
from kernel.errors import RuleFileError
from kernel.models import Decision, DecisionMode, PlaybookRun, RunStatus, utcnow
from kernel.state import State
from knowledge.graph import KnowledgeGraph
from loop.daemon import Engine
from mendloop.service import build_engine
from rules import RULES_DIR

from ..conftest import analyzed

pytestmark = pytest.mark.neo4j
RULE = "cache-saturation-penetration"


@pytest.fixture(scope="module")
def engine(neo4j_settings: Settings, tmp_path_factory) -> Iterator[Engine]:
    """A started engine (its loop in a background thread), on an emptied test graph."""
    graph = KnowledgeGraph.connect(neo4j_settings)
    graph._run("MATCH (n) DETACH DELETE n")
    graph.close()
    settings = Settings(
        var_dir=tmp_path_factory.mktemp("engine-api"),
        neo4j_uri=neo4j_settings.neo4j_uri,
        neo4j_user=neo4j_settings.neo4j_user,
        neo4j_password=neo4j_settings.neo4j_password,
        shadow="all",
    )
    engine = build_engine(settings, progress=lambda _: None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(engine.start(), loop).result(60)
    yield engine
    asyncio.run_coroutine_threadsafe(engine.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    engine.close()


@pytest.fixture(scope="module")
def tokens(engine: Engine) -> dict[Role, dict[str, str]]:
    auth = Auth.on(engine.store.engine)
    return {
        role: {"Authorization": f"Bearer {auth.tokens.create(f'{role.value}-1', role).token}"}
        for role in Role
    }


@pytest.fixture(scope="module")
def client(engine: Engine, tokens) -> Iterator[TestClient]:
    with TestClient(app_for(engine, auth=Auth.on(engine.store.engine))) as client:
        yield client


def waiting(engine: Engine, target: str, requested_by: str, risk: str) -> tuple[str, str]:
    """An incident waiting for approval of a stored plan; (id, plan_hash)."""
    incident_id = analyzed(engine, target)
    spec = engine.library["sol-cache-scale-out"]
    decision = Decision(
        incident_id=incident_id,
        solution_id=spec.id,
        mode=DecisionMode.approval,
        reason="test",
        requested_by=requested_by,
    )
    plan = ApprovalPlan.build(
        incident_id=incident_id,
        solution_id=spec.id,
        title=spec.title,
        risk=risk,
        target=target,
        playbook=spec.playbook,
        hosts=("localhost",),
        check_mode=True,
        requested_by=requested_by,
    )
    engine.store.transition(incident_id, State.decided, "test", decision=decision)
    engine.store.transition(incident_id, State.awaiting_approval, "test", plan=plan)
    return incident_id, plan.plan_hash


def settle(engine: Engine, incident_id: str) -> Any:
    deadline = time.monotonic() + 180
    while True:
        incident = engine.store.get(incident_id)
        if incident.terminal or time.monotonic() > deadline:
            return incident
        time.sleep(0.2)


# -- probes and metrics -------------------------------------------------------------------


def test_readyz_names_what_failed(client, engine) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"sql", "neo4j", "rules", "loop"}
    assert all(c["ok"] for c in ready.json()["checks"].values())
    with socket.socket() as sock:  # a port where nothing answers: Neo4j is down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"bolt://127.0.0.1:{port}"
    driver = GraphDatabase.driver(
        uri, auth=("neo4j", "x"), connection_timeout=1.0, max_transaction_retry_time=1.0
    )
    real, engine.graph = engine.graph, KnowledgeGraph(driver, uri)
    try:
        down = client.get("/readyz")
    finally:
        engine.graph = real
        driver.close()
    assert down.status_code == 503
    checks = down.json()["checks"]
    assert not checks["neo4j"]["ok"] and "Neo4j" in checks["neo4j"]["detail"]
    assert checks["sql"]["ok"] and checks["rules"]["ok"] and checks["loop"]["ok"]
    engine.upkeep.errors = (RuleFileError("rules/x.yaml", 3, "unknown metric 'nope'"),)
    try:
        broken = client.get("/readyz")
    finally:
        engine.upkeep.errors = ()
    assert broken.status_code == 503 and not broken.json()["checks"]["rules"]["ok"]
    assert "rules/x.yaml:3" in broken.json()["checks"]["rules"]["detail"]
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").json()["status"] == "ok"


def test_reanalyze_walks_on_and_metrics_show_it(client, engine, tokens) -> None:
    incident_id = analyzed(engine, "api-metrics-1")
    again = client.post(f"/v1/incidents/{incident_id}/reanalyze", headers=tokens[Role.operator])
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "decided"
    incident = settle(engine, incident_id)  # shadow mode: recorded, escalated, not run
    assert incident.state == State.escalated and "shadow" in incident.reason
    notes = [t.note for t in incident.timeline]
    assert any(n.startswith("re-analysed by operator-1") for n in notes)
    assert incident.decision.requested_by == "operator-1"
    # a playbook run in the ledger, counted by outcome
    now = utcnow()
    engine.ledger.begin_run(f"{incident_id}/x/check", incident_id, "check", "x.yml")
    engine.ledger.finish_run(
        f"{incident_id}/x/check",
        PlaybookRun(
            playbook="x.yml",
            check_mode=True,
            status=RunStatus.successful,
            rc=0,
            started=now,
            ended=now,
        ),
        [],
        ["--- before\n+++ after"],
        None,
    )
    detail = client.get(f"/v1/incidents/{incident_id}", headers=tokens[Role.viewer]).json()
    assert [(r["phase"], r["status"], r["diff"]) for r in detail["runs"]] == [
        ("check", "successful", ["--- before\n+++ after"])
    ]
    # what the decider refuses (tests/loop/test_decide_library.py counts it) is exported
    engine.decider.refusals["library_mismatch"] += 1
    refused = engine.decider.refusals["library_mismatch"]
    text = client.get("/metrics", headers=tokens[Role.viewer])
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert f'mendloop_decisions_refused_total{{reason="library_mismatch"}} {refused}.0' in text.text
    body = text.text
    assert 'mendloop_stage_seconds_count{from_state="analyzed",to_state="decided"}' in body
    assert 'mendloop_stage_seconds_count{from_state="decided",to_state="escalated"}' in body
    assert 'mendloop_incidents{state="escalated"}' in body
    assert 'mendloop_executions{phase="check",status="successful"} 1.0' in body
    assert "mendloop_findings_queued " in body and "mendloop_incident_tasks " in body
    assert 'mendloop_intake_samples{reason="accepted"}' in body
    assert 'mendloop_analysis_dropped_total{reason="out_of_order"} 0.0' in body
    assert (
        'mendloop_api_requests_total{method="POST",route="/v1/incidents/{incident_id}/reanalyze",'
        'status="200"}' in body
    )
    assert incident_id not in body  # route templates, never ids
    assert client.get("/metrics").status_code == 401


# -- actions ------------------------------------------------------------------------------


def test_approval_errors_are_mapped(client, engine, tokens) -> None:
    approver = tokens[Role.approver]
    incident_id, plan_hash = waiting(engine, "api-approve-1", "approver-1", "high")
    stale = client.post(
        f"/v1/incidents/{incident_id}/approve", json={"plan_hash": "0" * 64}, headers=approver
    )
    assert stale.status_code == 409 and plan_hash in stale.json()["detail"]
    own = client.post(
        f"/v1/incidents/{incident_id}/approve", json={"plan_hash": plan_hash}, headers=approver
    )
    assert own.status_code == 403 and "two-person rule" in own.json()["detail"]
    plan = client.get(f"/v1/incidents/{incident_id}/plan", headers=tokens[Role.viewer])
    assert plan.json()["plan_hash"] == plan_hash and plan.json()["risk"] == "high"
    no = client.post(
        f"/v1/incidents/{incident_id}/reject", json={"comment": "not now"}, headers=approver
    )
    assert no.status_code == 200 and no.json()["state"] == "rejected"
    again = client.post(f"/v1/incidents/{incident_id}/approve", headers=approver)
    assert again.status_code == 409
    audit = client.get("/v1/audit", params={"actor": "approver-1"}, headers=tokens[Role.admin])
    details = [e["detail"] for e in audit.json()]
    assert f"approve {incident_id} plan {'0' * 12} as approver-1" in details
    assert f"reject {incident_id} as approver-1" in details


def test_close_escalate_and_propose(client, engine, tokens) -> None:
    operator = tokens[Role.operator]
    first = analyzed(engine, "api-close-1")
    closed = client.post(
        f"/v1/incidents/{first}/close", json={"comment": "fixed by hand"}, headers=operator
    )
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    assert "closed by operator-1: fixed by hand" in closed.json()["reason"]
    again = client.post(f"/v1/incidents/{first}/close", json={"comment": "x"}, headers=operator)
    assert again.status_code == 409
    assert client.post(f"/v1/incidents/{first}/close", json={}, headers=operator).status_code == 422
    second = analyzed(engine, "api-close-2")
    unknown = client.post(
        f"/v1/incidents/{second}/propose", json={"solution_id": "sol-nope"}, headers=operator
    )
    assert unknown.status_code == 422 and "sol-nope" in unknown.json()["detail"]
    up = client.post(
        f"/v1/incidents/{second}/escalate", json={"comment": "needs the DBA"}, headers=operator
    )
    assert up.status_code == 200 and up.json()["state"] == "escalated"
    late = client.post(f"/v1/incidents/{second}/reanalyze", headers=operator)
    assert late.status_code == 409 and "re-analysed" in late.json()["detail"]
    assert client.post("/v1/incidents/nope/reanalyze", headers=operator).status_code == 404


def test_pause_and_resume_automation(client, engine, tokens) -> None:
    operator, viewer = tokens[Role.operator], tokens[Role.viewer]
    assert client.get("/v1/automation", headers=viewer).json()["paused"] is False
    everywhere = client.post(
        "/v1/automation/pause", json={"reason": "change freeze"}, headers=operator
    )
    assert everywhere.status_code == 200
    body = everywhere.json()
    assert (body["paused"], body["by"], body["reason"]) == (True, "operator-1", "change freeze")
    one = client.post("/v1/automation/pause", json={"target": "pm-site-9"}, headers=operator)
    assert [t["target"] for t in one.json()["targets"]] == ["pm-site-9"]
    assert engine.operations.automation().pause_for("pm-site-9") is not None
    resumed = client.post("/v1/automation/resume", headers=operator)
    assert resumed.json()["paused"] is False and len(resumed.json()["targets"]) == 1
    missing = client.post("/v1/automation/resume", json={"target": "pm-site-8"}, headers=operator)
    assert missing.status_code == 404 and "pm-site-8" in missing.json()["detail"]
    assert client.post("/v1/automation/resume", headers=operator).status_code == 404
    last = client.post("/v1/automation/resume", json={"target": "pm-site-9"}, headers=operator)
    assert last.json() == {**last.json(), "paused": False, "targets": []}
    refused = client.post("/v1/automation/pause", headers=viewer)
    assert refused.status_code == 403
    audit = client.get("/v1/audit", headers=tokens[Role.admin]).json()
    assert any(
        e["detail"] == "pause automation everywhere as operator-1: change freeze" for e in audit
    )


# -- knowledge ----------------------------------------------------------------------------


def test_similar_cases_by_text_and_by_incident(client, engine, tokens) -> None:
    viewer = tokens[Role.viewer]
    found = client.get(
        "/v1/knowledge/search",
        params={
            "text": "cache hit ratio collapsed, utilisation above 80 %, queries fall through",
            "fault": "cache_saturation",
            "symptoms": "cache_hit_ratio:low,cache_utilization_pct:high",
            "k": 3,
        },
        headers=viewer,
    )
    assert found.status_code == 200, found.text
    matches = found.json()["matches"]
    assert len(matches) == 3 and matches[0]["fault"] == "cache_saturation"
    assert matches[0]["same_problem"] and matches[0]["solution_id"] == "sol-cache-scale-out"
    assert matches[0]["similarity"] >= matches[-1]["similarity"]
    incident_id = analyzed(engine, "api-similar-1")
    like = client.get(f"/v1/incidents/{incident_id}/similar", headers=viewer).json()
    assert like["query"]["fault"] == "cache_saturation"
    assert like["matches"][0]["fault"] == "cache_saturation"
    same = client.get("/v1/knowledge/search", params={"incident": incident_id}, headers=viewer)
    assert same.json()["matches"] == like["matches"]
    bad = [
        {},
        {"text": "x", "incident": incident_id},
        {"text": "  "},
        {"text": "x", "fault": "no_such_fault"},
        {"text": "x", "symptoms": "cache_hit_ratio:sideways"},
    ]
    for params in bad:
        answer = client.get("/v1/knowledge/search", params=params, headers=viewer)
        assert answer.status_code == 422, params
    fresh = engine.store.open_incident("api-similar-2", [])
    assert client.get(f"/v1/incidents/{fresh}/similar", headers=viewer).status_code == 404


CASE = {
    "id": "api-case-1",
    "title": "Redis full at peak",
    "text": "Redis memory full at the evening peak; hit ratio fell and the database took the load.",
    "symptoms": ["cache_hit_ratio:low", "cache_utilization_pct:high"],
    "device_type": "redis-cluster",
    "environment": {"load": "peak"},
    "fault": "cache_saturation",
    "solution_id": "sol-cache-scale-out",
    "outcome": "resolved",
    "time_to_resolve_s": 600,
}


def _record(client: TestClient, viewer: dict[str, str]) -> dict[str, Any]:
    solution = client.get("/v1/solutions/sol-cache-scale-out", headers=viewer).json()
    return solution["track_record"]


def test_case_crud_moves_the_track_record(client, tokens) -> None:
    operator, viewer = tokens[Role.operator], tokens[Role.viewer]
    before = _record(client, viewer)
    created = client.post("/v1/cases", json=CASE, headers=operator)
    assert created.status_code == 201, created.text
    assert created.json()["environment"] == {"load": "peak"}
    assert _record(client, viewer)["successes"] == before["successes"] + 1
    assert client.post("/v1/cases", json=CASE, headers=operator).status_code == 409
    assert client.get("/v1/cases/api-case-1", headers=viewer).json()["title"] == CASE["title"]
    failed = {**CASE, "outcome": "failed"}
    assert client.put("/v1/cases/api-case-1", json=failed, headers=operator).status_code == 200
    after = _record(client, viewer)
    assert (after["successes"], after["failures"]) == (before["successes"], before["failures"] + 1)
    mismatch = client.put("/v1/cases/other", json=CASE, headers=operator)
    assert mismatch.status_code == 422
    wrong = client.post(
        "/v1/cases", json={**CASE, "id": "api-case-2", "fault": "no_such"}, headers=operator
    )
    assert wrong.status_code == 422 and "unknown fault" in wrong.json()["detail"]
    extra = client.post("/v1/cases", json={**CASE, "id": "api-case-3", "x": 1}, headers=operator)
    assert extra.status_code == 422
    page = client.get("/v1/cases", params={"fault": "cache_saturation"}, headers=viewer).json()
    assert "api-case-1" in [c["id"] for c in page["items"]]
    assert {c["fault"] for c in page["items"]} == {"cache_saturation"}
    first = client.get("/v1/cases", params={"limit": 1}, headers=viewer).json()
    second = client.get(
        "/v1/cases", params={"limit": 1, "after": first["next_after"]}, headers=viewer
    ).json()
    assert first["items"][0]["id"] < second["items"][0]["id"]
    assert client.delete("/v1/cases/api-case-1", headers=operator).status_code == 204
    assert client.get("/v1/cases/api-case-1", headers=viewer).status_code == 404
    assert client.delete("/v1/cases/api-case-1", headers=operator).status_code == 404
    assert _record(client, viewer) == before


def test_import_reports_bad_rows_with_line_and_reason(client, tokens) -> None:
    operator, viewer = tokens[Role.operator], tokens[Role.viewer]
    rows = [
        json.dumps({**CASE, "id": "imp-1"}),
        "{not json",
        json.dumps({**CASE, "id": "imp-2", "solution": "sol-nope", "solution_id": None}),
        "",
        json.dumps({**CASE, "id": "imp-3", "description": "Written as a ticket.", "text": None}),
    ]
    body = "\n".join(rows).encode()
    headers = {**operator, "content-type": "application/x-ndjson"}
    checked = client.post(
        "/v1/cases/import", params={"check": "true"}, content=body, headers=headers
    )
    assert checked.status_code == 200, checked.text
    out = checked.json()
    assert (out["rows"], out["good"], out["bad"], out["written"]) == (4, 2, 2, 0)
    assert [(b["line"], b["id"]) for b in out["bad_rows"]] == [(2, ""), (3, "imp-2")]
    assert "not JSON" in out["bad_rows"][0]["reason"]
    assert "unknown solution 'sol-nope'" in out["bad_rows"][1]["reason"]
    assert client.get("/v1/cases/imp-1", headers=viewer).status_code == 404
    written = client.post("/v1/cases/import", content=body, headers=headers).json()
    assert (written["written"], written["bad"]) == (2, 2)
    assert client.get("/v1/cases/imp-3", headers=viewer).json()["text"] == "Written as a ticket."
    again = client.post("/v1/cases/import", content=body, headers=headers).json()
    assert (again["written"], again["unchanged"]) == (0, 2)  # idempotent
    csv = (
        "id,title,description,symptoms,device,environment,fault,solution,outcome\n"
        "imp-csv-1,Cache full,Hit ratio fell,cache_hit_ratio:low,redis-cluster,load=peak,"
        "cache_saturation,sol-cache-scale-out,resolved\n"
        "imp-csv-2,Bad,Text,cache_hit_ratio:low,redis-cluster,peak,cache_saturation,"
        "sol-cache-scale-out,resolved\n"
    )
    answer = client.post(
        "/v1/cases/import", content=csv, headers={**operator, "content-type": "text/csv"}
    )
    assert answer.json()["format"] == "csv" and answer.json()["written"] == 1
    assert answer.json()["bad_rows"][0]["line"] == 3
    assert "key=value" in answer.json()["bad_rows"][0]["reason"]
    no_header = client.post(
        "/v1/cases/import", params={"format": "csv"}, content="a,b\n1,2\n", headers=operator
    )
    assert no_header.status_code == 400 and "header" in no_header.json()["detail"]
    wrong_type = client.post(
        "/v1/cases/import", content=b"x", headers={**operator, "content-type": "image/png"}
    )
    assert wrong_type.status_code == 415
    for case_id in ("imp-1", "imp-3", "imp-csv-1"):
        client.delete(f"/v1/cases/{case_id}", headers=operator)


def test_solutions_with_track_record_and_autonomy(client, engine, tokens) -> None:
    viewer = tokens[Role.viewer]
    solution = engine.graph.get_solution("sol-cache-scale-out")
    engine.autonomy.mode(solution, "cache_saturation", "pm-site-3")  # the key's first decision
    listed = client.get("/v1/solutions", headers=viewer).json()
    assert {s["id"] for s in listed} == set(engine.library)
    scale = next(s for s in listed if s["id"] == "sol-cache-scale-out")
    assert scale["track_record"]["successes"] >= 1 and scale["risk"] in ("low", "medium", "high")
    keys = {(a["fault"], a["target_class"]): a for a in scale["autonomy"]}
    assert keys[("cache_saturation", "pm-site")]["level"] in ("suggest", "approval", "auto")
    only = client.get("/v1/solutions", params={"fault": "db_io_wait"}, headers=viewer).json()
    assert only and all("db_io_wait" in s["faults"] for s in only)
    assert client.get("/v1/solutions/sol-nope", headers=viewer).status_code == 404


# -- rules and catalog --------------------------------------------------------------------


def test_rules_list_validate_reload(client, engine, tokens) -> None:
    viewer, operator = tokens[Role.viewer], tokens[Role.operator]
    listed = client.get("/v1/rules", headers=viewer).json()
    assert len(listed["rules"]) == len(engine.analyzer.active_rules) and listed["errors"] == []
    cache = next(r for r in listed["rules"] if r["id"] == RULE)
    assert cache["faults"] == ["cache_saturation"] and "cache.yaml:" in cache["source"]
    assert cache["definition"]["all"][0]["series"] == "cache_utilization_pct"
    good = (RULES_DIR / "cache.yaml").read_bytes()  # the twin pack's, which the engine runs
    ok = client.post("/v1/rules/validate", content=good, headers=viewer).json()
    assert ok["ok"] and RULE in ok["rules"]
    bad = (
        b"rules:\n  - id: x1\n    fault: cache_saturation\n    summary: s\n"
        b"    all:\n      - series: nope\n"
    )
    checked = client.post(
        "/v1/rules/validate", params={"name": "mine.yaml"}, content=bad, headers=viewer
    ).json()
    assert not checked["ok"]
    assert [(e["file"], e["line"]) for e in checked["errors"]] == [("mine.yaml", 6)]
    assert "unknown metric 'nope'" in checked["errors"][0]["reason"]
    junk = client.post("/v1/rules/validate", content=b"rules: [", headers=viewer).json()
    assert not junk["ok"] and junk["errors"][0]["line"] is not None
    bad_name = client.post(
        "/v1/rules/validate", params={"name": "../x"}, content=good, headers=viewer
    )
    assert bad_name.status_code == 422
    reloaded = client.post("/v1/rules/reload", headers=operator).json()
    assert (
        reloaded["ok"] and reloaded["active"] == len(listed["rules"]) and reloaded["errors"] == []
    )


def test_catalog_filters(client, engine, tokens) -> None:
    viewer = tokens[Role.viewer]
    everything = client.get("/v1/catalog", headers=viewer).json()
    assert len(everything) == len(engine.catalog)
    cache = client.get("/v1/catalog", params={"subsystem": "cache"}, headers=viewer).json()
    assert cache and {m["subsystem"] for m in cache} == {"cache"}
    hits = client.get("/v1/catalog", params={"q": "hit_ratio"}, headers=viewer).json()
    assert "cache_hit_ratio" in [m["name"] for m in hits]
    roles = client.get("/v1/catalog", params={"sqi_role": "response_time"}, headers=viewer).json()
    assert roles and {m["sqi_role"] for m in roles} == {"response_time"}
    one = client.get("/v1/catalog/cache_hit_ratio", headers=viewer).json()
    assert one["bad"] == "low"
    assert client.get("/v1/catalog/nope", headers=viewer).status_code == 404
