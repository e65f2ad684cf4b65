"""Approve / reject through the REST API, over a real SQLite store. The daemon's side
(approve -> the real run) is covered end to end in tests/e2e; here ``StoreApprovals`` is
the daemon's store half of it, so the HTTP contract is checked on its own."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from loop.state import State
from loop.store import IncidentStore, IncidentView


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


@pytest.fixture
def live_api(store):
    """The API on a real socket, as `mendloop approve` reaches a running daemon."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    approvals = StoreApprovals(store)
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, approvals=approvals), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    yield f"http://127.0.0.1:{port}", approvals
    server.should_exit = True
    thread.join()


def test_cli_approve_and_reject_go_through_the_api(store, live_api, capsys) -> None:
    from loop.cli import main

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
