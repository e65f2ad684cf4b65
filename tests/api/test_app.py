"""The REST API over a real SQLite store and a real monitor."""

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from kernel.state import State
from loop.monitor import Monitor
from loop.store import IncidentStore
from rules.catalog import load_catalog


@pytest.fixture
def store(tmp_path):
    store = IncidentStore(f"sqlite:///{tmp_path / 'api.db'}")
    yield store
    store.close()


@pytest.fixture
def monitor():
    return Monitor(load_catalog(), window_s=30, clock=lambda: 100.0, max_batch=50)


@pytest.fixture
def client(store, monitor):
    with TestClient(create_app(store, submit=monitor.ingest, stats=monitor.stats)) as client:
        yield client


def test_healthz(client):
    assert client.get("/healthz").json()["status"] == "ok"


def test_incident_list_and_detail_with_timeline(client, store):
    incident_id = store.open_incident("site", [])
    store.transition(incident_id, State.escalated, "no rule", reason="no rule")
    listed = client.get("/v1/incidents").json()
    assert [(i["id"], i["state"]) for i in listed] == [(incident_id, "escalated")]
    assert client.get("/v1/incidents", params={"state": "open"}).json() == []
    detail = client.get(f"/v1/incidents/{incident_id}").json()
    assert [t["to_state"] for t in detail["timeline"]] == ["open", "escalated"]
    assert detail["reason"] == "no rule" and detail["report"] is None


def test_unknown_incident_is_404(client):
    response = client.get("/v1/incidents/nope")
    assert response.status_code == 404 and "nope" in response.json()["detail"]


def test_bad_state_filter_is_422(client):
    assert client.get("/v1/incidents", params={"state": "sideways"}).status_code == 422


def test_samples_partly_bad_batch_keeps_the_good(client, monitor):
    response = client.post(
        "/v1/samples",
        json={
            "samples": [
                {"series": "cache_hit_ratio", "labels": {"target": "a"}, "ts": 1, "value": 0.9},
                {"series": "bogus", "labels": {"target": "a"}, "ts": 1, "value": 1},
                {"series": "cache_hit_ratio", "labels": {"target": "a"}, "ts": 2, "value": "high"},
                7,
            ]
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3]
    assert "unknown metric 'bogus'" in body["rejected"][0]["error"]
    assert monitor.latest("a", "cache_hit_ratio") == (1.0, 0.9)


def test_samples_all_bad_is_422_and_bare_list_is_accepted(client):
    bad = client.post("/v1/samples", json=[{"series": "bogus", "ts": 1, "value": 1}])
    assert bad.status_code == 422 and bad.json()["accepted"] == 0
    assert client.post("/v1/samples", json={"nope": 1}).status_code == 422
    assert (
        client.post(
            "/v1/samples", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    good = client.post(
        "/v1/samples",
        json=[{"series": "cache_hit_ratio", "labels": {"target": "b"}, "ts": 1, "value": 0.9}],
    )
    assert good.json()["accepted"] == 1


def test_read_only_server_refuses_samples(store):
    with TestClient(create_app(store)) as client:
        assert client.post("/v1/samples", json=[]).status_code == 503


def test_oversized_batch_is_413_and_counted(client):
    batch = [
        {"series": "cache_hit_ratio", "labels": {"target": "c"}, "ts": i, "value": 1}
        for i in range(51)
    ]
    response = client.post("/v1/samples", json=batch)
    assert response.status_code == 413
    assert response.json()["rejected"][0]["reason"] == "oversized_batch"
    assert client.get("/v1/intake").json()["counters"]["oversized_batch"] == 51


def test_busy_intake_is_429_with_retry_after(store):
    from kernel.errors import Overloaded

    def busy(batch, **_):
        raise Overloaded("intake busy", retry_after_s=2.0)

    with TestClient(create_app(store, submit=busy)) as client:
        response = client.post("/v1/samples", json=[])
    assert response.status_code == 429 and response.headers["retry-after"] == "2"


def test_intake_stats_count_every_reason(client):
    client.post(
        "/v1/samples",
        json=[
            {"series": "cache_hit_ratio", "labels": {"target": "d"}, "ts": 50, "value": 0.9},
            {"series": "cache_hit_ratio", "labels": {"target": "d"}, "ts": 50, "value": 0.9},
            {"series": "bogus", "labels": {"target": "d"}, "ts": 50, "value": 1},
        ],
    )
    stats = client.get("/v1/intake").json()
    nonzero = {k: v for k, v in stats["counters"].items() if v}
    assert nonzero == {"accepted": 1, "duplicate": 1, "unknown_metric": 1}
    assert stats["counters"]["shed_overload"] == 0  # every reason is listed, zero or not
    assert stats["series"] == 1
