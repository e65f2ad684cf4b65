"""Who may call what: every operation's documented role (OpenAPI ``x-mendloop-role``) is the
role the server enforces (401 without a token, 403 one role below, through at the role);
mutating calls are audited; ``by`` is the token's name; bodies over the limit are 413.
Real SQLite store, real tokens, real monitor; no engine (what needs it answers 503)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.audit_tally import Call, PushTally
from api.auth import Auth, Role
from api.cluster import install_cluster
from kernel.state import State
from loop.monitor import Monitor
from loop.store import IncidentStore
from rules.catalog import load_catalog

LOWER = {Role.operator: Role.viewer, Role.approver: Role.operator, Role.admin: Role.approver}

# every operation of the API's own routers, with its least role ("none": probes)
EXPECTED = {
    ("get", "/healthz"): "none",
    ("get", "/readyz"): "none",
    ("get", "/metrics"): "viewer",
    ("post", "/v1/samples"): "operator",
    ("post", "/v1/samples/prometheus"): "operator",
    ("post", "/v1/metrics"): "operator",
    ("get", "/v1/intake"): "viewer",
    ("get", "/v1/intake/sources"): "viewer",
    ("get", "/v1/automation"): "viewer",
    ("post", "/v1/automation/pause"): "operator",
    ("post", "/v1/automation/resume"): "operator",
    ("get", "/v1/whoami"): "viewer",
    ("get", "/v1/audit"): "admin",
    ("get", "/v1/tokens"): "admin",
    ("get", "/v1/incidents"): "viewer",
    ("get", "/v1/incidents/{incident_id}"): "viewer",
    ("get", "/v1/incidents/{incident_id}/report"): "viewer",
    ("get", "/v1/incidents/{incident_id}/plan"): "viewer",
    ("get", "/v1/incidents/{incident_id}/similar"): "viewer",
    ("post", "/v1/incidents/{incident_id}/approve"): "approver",
    ("post", "/v1/incidents/{incident_id}/reject"): "approver",
    ("post", "/v1/incidents/{incident_id}/reanalyze"): "operator",
    ("post", "/v1/incidents/{incident_id}/propose"): "operator",
    ("post", "/v1/incidents/{incident_id}/close"): "operator",
    ("post", "/v1/incidents/{incident_id}/escalate"): "operator",
    ("get", "/v1/knowledge/search"): "viewer",
    ("get", "/v1/knowledge/stats"): "viewer",
    ("get", "/v1/cases"): "viewer",
    ("post", "/v1/cases"): "operator",
    ("get", "/v1/cases/{case_id}"): "viewer",
    ("put", "/v1/cases/{case_id}"): "operator",
    ("delete", "/v1/cases/{case_id}"): "operator",
    ("post", "/v1/cases/import"): "operator",
    ("get", "/v1/solutions"): "viewer",
    ("get", "/v1/solutions/{solution_id}"): "viewer",
    ("get", "/v1/rules"): "viewer",
    ("post", "/v1/rules/validate"): "viewer",
    ("post", "/v1/rules/reload"): "operator",
    ("get", "/v1/catalog"): "viewer",
    ("get", "/v1/catalog/{name}"): "viewer",
}


class StoreApprovals:
    """The store half of Engine.approve/reject (tests/api/test_approvals.py has the same)."""

    def __init__(self, store: IncidentStore) -> None:
        self.store = store

    def approve(self, incident_id: str, by: str = "api", comment: str = "") -> object:
        return self.store.transition(incident_id, State.approved, f"approved by {by}: {comment}")

    def reject(self, incident_id: str, by: str = "api", comment: str = "") -> object:
        return self.store.transition(incident_id, State.rejected, f"rejected by {by}")


@pytest.fixture
def store(tmp_path):
    store = IncidentStore(f"sqlite:///{tmp_path / 'roles.db'}")
    yield store
    store.close()


@pytest.fixture
def auth(store):
    return Auth.on(store.engine)


@pytest.fixture
def tokens(auth):
    """One live token per role: role -> 'Bearer ...' header."""
    return {
        role: {"Authorization": f"Bearer {auth.tokens.create(f'{role.value}-1', role).token}"}
        for role in Role
    }


@pytest.fixture
def client(store, auth):
    monitor = Monitor(load_catalog(), window_s=30, clock=lambda: 100.0, max_batch=50)
    app = create_app(
        store,
        submit=monitor.ingest,
        stats=monitor.stats,
        approvals=StoreApprovals(store),
        auth=auth,
        max_body_bytes=4096,
    )
    with TestClient(app) as client:
        yield client


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    url = re.sub(r"\{[a-z_]+\}", "x", path)
    kwargs = {"json": {}} if method in ("post", "put") else {}
    return client.request(method.upper(), url, headers=headers, **kwargs).status_code


def test_openapi_lists_every_route_with_its_role_and_errors(client) -> None:
    schema = client.get("/openapi.json").json()
    found = {
        (method, path): op["x-mendloop-role"]
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    assert found == EXPECTED
    assert "bearer" in schema["components"]["securitySchemes"]
    for (method, path), role in found.items():
        op = schema["paths"][path][method]
        assert op.get("tags"), f"{method} {path} has no tag"
        assert op.get("summary") and {"200", "201", "204"} & set(op["responses"])
        if role != "none":
            assert op["security"] == [{"bearer": []}]
            assert f"Needs role: **{role}**" in op["description"]
            assert "401" in op["responses"], f"{method} {path}"
            assert ("403" in op["responses"]) == (role != "viewer"), f"{method} {path}"


def test_each_route_enforces_its_documented_role(client, tokens) -> None:
    for (method, path), role_name in EXPECTED.items():
        if role_name == "none":
            assert _call(client, method, path, {}) in (200, 503)
            continue
        role = Role(role_name)
        assert _call(client, method, path, {}) == 401, f"{method} {path} without a token"
        bad = {"Authorization": "Bearer mlt_000000000000_nope"}
        assert _call(client, method, path, bad) == 401, f"{method} {path} with a bad token"
        if role in LOWER:
            below = _call(client, method, path, tokens[LOWER[role]])
            assert below == 403, f"{method} {path} as {LOWER[role]}: {below}"
        allowed = _call(client, method, path, tokens[role])
        assert allowed not in (401, 403), f"{method} {path} as {role}: {allowed}"


def test_a_revoked_token_is_refused_at_once(client, auth, tokens) -> None:
    assert client.get("/v1/incidents", headers=tokens[Role.viewer]).status_code == 200
    auth.tokens.revoke("viewer-1")
    assert client.get("/v1/incidents", headers=tokens[Role.viewer]).status_code == 401


def test_by_is_the_token_and_every_change_is_audited(client, store, tokens) -> None:
    incident_id = store.open_incident("site", [])
    for state in (State.analyzed, State.decided, State.awaiting_approval):
        store.transition(incident_id, state, "test")
    answer = client.post(
        f"/v1/incidents/{incident_id}/approve",
        json={"by": "mallory", "comment": "go"},
        headers=tokens[Role.approver],
    )
    assert answer.status_code == 200
    assert store.get(incident_id).timeline[-1].note == "approved by approver-1: go"
    client.post(f"/v1/incidents/{incident_id}/reject")  # no token: refused, still audited
    client.post(f"/v1/incidents/{incident_id}/reject", headers=tokens[Role.operator])
    audit = client.get("/v1/audit", headers=tokens[Role.admin]).json()
    assert [(e["actor"], e["role"], e["status"], e["path"]) for e in audit[:3]] == [
        ("operator-1", "operator", 403, f"/v1/incidents/{incident_id}/reject"),
        ("unauthenticated", "", 401, f"/v1/incidents/{incident_id}/reject"),
        ("approver-1", "approver", 200, f"/v1/incidents/{incident_id}/approve"),
    ]
    assert audit[2]["detail"] == f"approve {incident_id} as approver-1"
    assert audit[2]["client"]  # from where
    only = client.get("/v1/audit", params={"actor": "operator-1"}, headers=tokens[Role.admin])
    assert {e["actor"] for e in only.json()} == {"operator-1"}
    reads = [e for e in audit if e["method"] == "GET"]
    assert reads == []  # reads are not audited, changes are


def test_metric_pushes_are_audited_once_a_minute_by_caller_and_outcome(
    client, auth, tokens
) -> None:
    """A push's first call of a (caller, path, status) is written at once; its repeats are
    one row when the window closes or the daemon stops (api/audit_tally.py); other changes
    are still audited one by one."""

    def sample(ts: int) -> dict[str, object]:
        return {"series": "cache_hit_ratio", "labels": {"target": "a"}, "ts": ts, "value": 0.9}

    for ts in range(91, 95):
        answer = client.post("/v1/samples", json=[sample(ts)], headers=tokens[Role.operator])
        assert answer.status_code == 200
    for ts in range(95, 98):
        assert client.post("/v1/samples", json=[sample(ts)]).status_code == 401
    for _ in range(2):  # not a push (503 here: no engine): audited call by call
        client.post("/v1/automation/pause", headers=tokens[Role.operator])

    def rows() -> list[tuple[str, str, int, str]]:
        audit = client.get("/v1/audit", headers=tokens[Role.admin]).json()
        return [(e["actor"], e["path"], e["status"], e["detail"]) for e in reversed(audit)]

    first = "push: the first like this in the window; repeats are tallied"
    assert [r[:3] for r in rows()] == [
        ("operator-1", "/v1/samples", 200),
        ("unauthenticated", "/v1/samples", 401),
        ("operator-1", "/v1/automation/pause", 503),
        ("operator-1", "/v1/automation/pause", 503),
    ]
    assert [r[3] for r in rows()[:2]] == [first, first]
    auth.flush()  # as the daemon does when it stops
    tallied = [(r[0], r[2], r[3].split(" more")[0]) for r in rows()[4:]]
    assert sorted(tallied) == [("operator-1", 200, "3"), ("unauthenticated", 401, "2")]
    auth.flush()
    assert len(rows()) == 6  # nothing counted twice


def test_a_push_window_closes_at_the_next_push_after_it() -> None:
    now = [0.0]
    tally = PushTally(window_s=60.0, clock=lambda: now[0])
    call = Call(None, "prometheus", "POST", "/api/v1/write", 204)
    assert len(tally.note(call)) == 1  # the first: written
    assert tally.note(call) == [] and tally.note(call) == []
    now[0] = 61.0
    rows = tally.note(call)  # the window's 2 repeats, and the next window's first
    assert [d.split(",")[0] for _, d in rows] == ["2 more like this", rows[1][1]]
    assert rows[1][1].startswith("push: the first")
    assert tally.flush() == []  # no repeats yet in this window


def test_token_listing_never_shows_secrets(client, tokens) -> None:
    answer = client.get("/v1/tokens", headers=tokens[Role.admin])
    assert answer.status_code == 200
    assert {t["name"] for t in answer.json()} == {f"{r.value}-1" for r in Role}
    for header in tokens.values():
        secret = header["Authorization"].split("_", 2)[2]
        assert secret not in answer.text
    who = client.get("/v1/whoami", headers=tokens[Role.operator]).json()
    assert who == {"name": "operator-1", "role": "operator", "via": "token"}


def test_bodies_over_the_limit_are_413(client, tokens) -> None:
    big = b"[" + b" " * 5000 + b"]"
    declared = client.post(
        "/v1/samples",
        content=big,
        headers={**tokens[Role.operator], "content-type": "application/json"},
    )
    assert declared.status_code == 413 and "4096" in declared.json()["detail"]

    def chunks():
        for _ in range(10):
            yield b" " * 1000

    streamed = client.post(
        "/v1/cases/import",
        content=chunks(),
        headers={**tokens[Role.operator], "content-type": "text/csv"},
    )
    assert streamed.status_code == 413
    audit = client.get("/v1/audit", headers=tokens[Role.admin]).json()
    assert [(e["path"], e["status"]) for e in audit[:2]] == [
        ("/v1/cases/import", 413),
        ("/v1/samples", 413),
    ]


def test_clear_4xx_on_bad_input(client, tokens) -> None:
    viewer, approver = tokens[Role.viewer], tokens[Role.approver]
    assert client.get("/v1/incidents", params={"limit": 0}, headers=viewer).status_code == 422
    assert client.get("/v1/incidents", params={"cursor": "???"}, headers=viewer).status_code == 400
    bad_window = {"opened_since": "2026-01-02T00:00:00Z", "opened_until": "2026-01-01T00:00:00Z"}
    assert client.get("/v1/incidents", params=bad_window, headers=viewer).status_code == 422
    bad_hash = client.post(
        "/v1/incidents/x/approve", json={"plan_hash": "not-a-hash"}, headers=approver
    )
    assert bad_hash.status_code == 422 and "plan_hash" in bad_hash.text
    extra = client.post("/v1/incidents/x/approve", json={"nope": 1}, headers=approver)
    assert extra.status_code == 422
    pause = client.post(
        "/v1/automation/pause", json={"target": "bad target!"}, headers=tokens[Role.operator]
    )
    assert pause.status_code == 422


def test_a_workers_cluster_routes_carry_their_role_too(store, auth, tokens) -> None:
    """Routes a worker adds after create_app (api/cluster.py) are in the role table: the
    status is for viewers; the peer routes are signed, not token-guarded, and undocumented."""
    monitor = Monitor(load_catalog(), window_s=30, clock=lambda: 100.0, max_batch=50)
    app = create_app(store, submit=monitor.ingest, stats=monitor.stats, auth=auth)
    install_cluster(app, monitor.ingest, lambda _: False, b"k" * 32, lambda: {"worker_id": "w"})
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
        op = schema["paths"]["/v1/cluster"]["get"]
        assert op["x-mendloop-role"] == "viewer" and op["security"] == [{"bearer": []}]
        assert "401" in op["responses"] and "403" not in op["responses"]
        assert not {"/v1/cluster/samples", "/v1/cluster/write"} & set(schema["paths"])
        assert client.get("/v1/cluster").status_code == 401
        answer = client.get("/v1/cluster", headers=tokens[Role.viewer])
        assert answer.status_code == 200 and answer.json() == {"worker_id": "w"}
        assert client.post("/v1/cluster/samples", content=b"{}").status_code == 401  # unsigned
