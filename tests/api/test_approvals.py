"""Approve / reject through the REST API, over a real SQLite store. The daemon's side
(approve -> the real run) is covered end to end in tests/e2e; here ``StoreApprovals`` is
the daemon's store half of it, so the HTTP contract is checked on its own, and
``approval_desk`` (the engine's real approval code, loop/operations.py) checks that an
approval must name the plan it approves, from the API and from ``mendloop approve``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from kernel.state import State
from loop.store import IncidentStore, IncidentView

from .test_chatops import _plan, approval_desk
from .test_chatops import waiting as waiting_with_plan


class StoreApprovals:
    """What Engine.approve/reject do to the store (without spawning the real run)."""

    def __init__(self, store: IncidentStore) -> None:
        self.store = store
        self.approved: list[str] = []

    def approve(self, incident_id: str, by: str = "api", comment: str = "") -> IncidentView:
        view = self.store.transition(incident_id, State.approved, f"approved by {by}: {comment}")
        self.approved.append(incident_id)
        return view

    def reject(self, incident_id: str, by: str = "api", comment: str = "") -> IncidentView:
        note = f"rejected by {by}: {comment}"
        return self.store.transition(incident_id, State.rejected, note, reason=note)


@pytest.fixture
def store(tmp_path):
    store = IncidentStore(f"sqlite:///{tmp_path / 'api.db'}")
    yield store
    store.close()


def waiting(store: IncidentStore) -> str:
    incident_id = store.open_incident("site", [])
    for state in (State.analyzed, State.decided, State.awaiting_approval):
        store.transition(incident_id, state, "test")
    return incident_id


def test_approve_moves_a_waiting_incident_on_once(store) -> None:
    approvals = StoreApprovals(store)
    incident_id = waiting(store)
    with TestClient(create_app(store, approvals=approvals)) as client:
        answer = client.post(
            f"/v1/incidents/{incident_id}/approve", json={"by": "alice", "comment": "go"}
        )
        assert answer.status_code == 200 and answer.json()["state"] == "approved"
        assert approvals.approved == [incident_id]
        again = client.post(f"/v1/incidents/{incident_id}/approve")
        assert again.status_code == 409 and "approved -> approved" in again.json()["detail"]
    note = store.get(incident_id).timeline[-1].note
    assert note == "approved by alice: go"


def test_reject_ends_the_incident_with_the_comment(store) -> None:
    incident_id = waiting(store)
    with TestClient(create_app(store, approvals=StoreApprovals(store))) as client:
        answer = client.post(
            f"/v1/incidents/{incident_id}/reject", json={"comment": "not during peak"}
        )
        assert answer.status_code == 200 and answer.json()["state"] == "rejected"
        assert "not during peak" in answer.json()["reason"]
        assert client.post(f"/v1/incidents/{incident_id}/approve").status_code == 409


def test_unknown_not_waiting_and_no_daemon(store) -> None:
    open_one = store.open_incident("site", [])
    with TestClient(create_app(store, approvals=StoreApprovals(store))) as client:
        assert client.post("/v1/incidents/nope/approve").status_code == 404
        assert client.post(f"/v1/incidents/{open_one}/approve").status_code == 409
        too_long = {"comment": "x" * 3000}
        assert client.post(f"/v1/incidents/{open_one}/reject", json=too_long).status_code == 422
    with TestClient(create_app(store)) as client:
        assert client.post(f"/v1/incidents/{open_one}/approve").status_code == 503


def _serve(store: IncidentStore, approvals: Any) -> Iterator[str]:
    """The API on a real socket, as `mendloop approve` reaches a running daemon."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, approvals=approvals), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()


@pytest.fixture
def live_api(store):
    approvals = StoreApprovals(store)
    for url in _serve(store, approvals):
        yield url, approvals


@pytest.fixture
def live_desk(store):
    """The API over the engine's real approval code (plans, hashes, two-person rule)."""
    desk = approval_desk(store)
    for url in _serve(store, desk):
        yield url, desk


def test_cli_approve_and_reject_go_through_the_api(store, live_api, capsys) -> None:
    from mendloop.cli import main

    url, approvals = live_api
    first, second = waiting(store), waiting(store)
    assert main(["approve", first, "--url", url, "--by", "bob", "--comment", "ok", "--json"]) == 0
    assert '"state": "approved"' in capsys.readouterr().out
    assert approvals.approved == [first]
    assert store.get(first).timeline[-1].note == "approved by bob: ok"
    assert main(["approve", first, "--url", url]) == 2  # not waiting any more
    assert "HTTP 409" in capsys.readouterr().err
    assert main(["reject", second, "--url", url, "--comment", "too risky"]) == 0
    assert store.get(second).state == State.rejected
    assert main(["approve", "nope", "--url", url]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    assert main(["approve", first, "--url", "http://127.0.0.1:1"]) == 2
    assert "daemon not reachable" in capsys.readouterr().err


# -- an approval names the plan it approves (issue 13) ---------------------------------------


def test_an_approval_without_the_plan_hash_is_refused_naming_it(store) -> None:
    """Whatever the risk: a person approves the plan they looked at, never "whatever the
    plan is by now" (428 names the current hash; 409 when the named one is stale)."""
    high, plan = waiting_with_plan(store)
    low = store.open_incident("site", [])
    for state in (State.analyzed, State.decided):
        store.transition(low, state, "test")
    low_plan = _plan(low).model_copy(update={"risk": "low"})
    store.transition(low, State.awaiting_approval, "needs approval", plan=low_plan)
    with TestClient(create_app(store, approvals=approval_desk(store))) as client:
        for incident_id, current in ((high, plan), (low, low_plan)):
            for body in (None, {"comment": "go"}, {"plan_hash": None}):
                bare = client.post(f"/v1/incidents/{incident_id}/approve", json=body)
                assert bare.status_code == 428, bare.text
                assert current.plan_hash in bare.json()["detail"]
                assert "must name the plan" in bare.json()["detail"]
            assert store.get(incident_id).state == State.awaiting_approval
        stale = client.post(f"/v1/incidents/{high}/approve", json={"plan_hash": "0" * 64})
        assert stale.status_code == 409 and plan.plan_hash in stale.json()["detail"]
        named = client.post(f"/v1/incidents/{high}/approve", json={"plan_hash": plan.plan_hash})
        assert named.status_code == 200 and named.json()["state"] == "approved"
        assert store.get(high).approval.plan_hash == plan.plan_hash
        spec = client.get("/openapi.json").json()["paths"]["/v1/incidents/{incident_id}/approve"]
        assert "428" in spec["post"]["responses"]


def test_an_incident_without_a_plan_is_approved_without_a_hash(store) -> None:
    """An incident left waiting before plans existed has nothing to name; the engine
    makes its plan before the run and asks again (loop/steps/approvals.py ``recheck``)."""
    incident_id = waiting(store)
    with TestClient(create_app(store, approvals=approval_desk(store))) as client:
        answer = client.post(f"/v1/incidents/{incident_id}/approve", json={"comment": "old"})
        assert answer.status_code == 200, answer.text
    assert store.get(incident_id).approval.plan_hash is None


def test_cli_approve_sends_the_plan_hash_it_shows(store, live_desk, capsys) -> None:
    from mendloop.cli import main

    url, _ = live_desk
    first, plan = waiting_with_plan(store)
    assert main(["approve", first, "--url", url, "--by", "bob"]) == 0
    said = capsys.readouterr()
    assert f"approving plan {plan.plan_hash[:12]}: voltage_dvr.yml on localhost" in said.err
    assert f"incident {first}: approved" in said.out
    assert store.get(first).approval.plan_hash == plan.plan_hash
    assert store.get(first).approval.by == "bob"
    # the plan a person reviewed, named by its first hex digits
    second, plan2 = waiting_with_plan(store)
    assert main(["approve", second, "--url", url, "--plan-hash", plan2.plan_hash[:10]]) == 0
    assert store.get(second).approval.plan_hash == plan2.plan_hash
    # a stale one is refused before anything is sent, naming the current hash
    third, plan3 = waiting_with_plan(store)
    assert main(["approve", third, "--url", url, "--plan-hash", "deadbeef"]) == 2
    err = capsys.readouterr().err
    assert "plan changed since you reviewed it" in err and plan3.plan_hash in err
    assert store.get(third).state == State.awaiting_approval
    assert main(["approve", third, "--url", url, "--plan-hash", "nothex!"]) == 2
    assert "8 to 64 lower-case hex digits" in capsys.readouterr().err
