"""Listing incidents (filters, keyset pagination), the detail's timeline, the RCA report as
JSON and Markdown: the REST API over a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.incidents import decode_cursor, encode_cursor
from kernel.models import Evidence, RCAReport, RootCause
from kernel.state import State
from loop.report import render_markdown
from loop.store import IncidentStore

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    store = IncidentStore(f"sqlite:///{tmp_path / 'incidents.db'}")
    yield store
    store.close()


@pytest.fixture
def client(store):
    with TestClient(create_app(store)) as client:
        yield client


def report_for(incident_id: str) -> RCAReport:
    evidence = Evidence(
        series="cache_hit_ratio", value=0.41, threshold=0.6, direction="low", since=1.0
    )
    cause = RootCause(
        fault="cache_saturation",
        component="cache",
        score=0.9,
        summary="cache saturated: hit ratio collapsed",
        evidence=(evidence,),
        why="the cache went abnormal first",
    )
    return RCAReport(incident_id=incident_id, target="pm-site-1", candidates=(cause,), latency_ms=1)


def seed(store: IncidentStore) -> list[str]:
    """25 incidents an hour apart on three targets; every fifth escalated, with a fault."""
    ids = []
    for n in range(25):
        incident_id = store.open_incident(f"site-{n % 3}", [], opened_at=T0 + timedelta(hours=n))
        if n % 5 == 0:
            store.transition(incident_id, State.analyzed, "rca", fault="db_io_wait")
            store.transition(incident_id, State.escalated, "no case", reason="no case")
        ids.append(incident_id)
    return ids


def test_cursor_round_trip() -> None:
    at = T0 + timedelta(microseconds=5)
    assert decode_cursor(encode_cursor(at, "abc")) == (at, "abc")


def test_pages_walk_every_incident_once_newest_first(client, store) -> None:
    ids = seed(store)
    seen, url, pages = [], "/v1/incidents?limit=10", 0
    while url:
        answer = client.get(url)
        assert answer.status_code == 200
        assert answer.headers["x-total-count"] == "25"
        seen += [i["id"] for i in answer.json()]
        pages += 1
        link = answer.headers.get("link")
        url = link.split(">")[0].removeprefix("<") if link else ""
        if url:
            assert answer.headers["x-next-cursor"] in url and 'rel="next"' in link
    assert pages == 3 and seen == list(reversed(ids))


def test_pages_break_ties_of_the_same_opening_time_by_id(client, store) -> None:
    ids = {store.open_incident("tied", [], opened_at=T0) for _ in range(5)}
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = client.get("/v1/incidents", params=params)
        seen += [i["id"] for i in answer.json()]
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            break
    assert sorted(seen, reverse=True) == seen and set(seen) == ids and len(seen) == 5


def test_filters(client, store) -> None:
    ids = seed(store)
    escalated = client.get("/v1/incidents", params={"state": "escalated"}).json()
    assert [i["id"] for i in escalated] == [ids[n] for n in (20, 15, 10, 5, 0)]
    both = client.get("/v1/incidents", params=[("state", "escalated"), ("state", "open")])
    assert both.headers["x-total-count"] == "25"
    assert len(client.get("/v1/incidents", params={"target": "site-1"}).json()) == 8
    fault = client.get("/v1/incidents", params={"fault": "db_io_wait", "target": "site-0"})
    assert [i["id"] for i in fault.json()] == [ids[15], ids[0]]
    window = {
        "opened_since": (T0 + timedelta(hours=3)).isoformat(),
        "opened_until": (T0 + timedelta(hours=6)).isoformat(),
    }
    assert [i["id"] for i in client.get("/v1/incidents", params=window).json()] == [
        ids[5],
        ids[4],
        ids[3],
    ]
    paged = client.get("/v1/incidents", params={"state": "open", "limit": 15})
    assert paged.headers["x-total-count"] == "20" and "link" in paged.headers
    rest = client.get(
        "/v1/incidents",
        params={"state": "open", "limit": 15, "cursor": paged.headers["x-next-cursor"]},
    )
    assert len(rest.json()) == 5 and "link" not in rest.headers
    assert {i["state"] for i in rest.json()} == {"open"}


def test_detail_has_the_whole_timeline(client, store) -> None:
    incident_id = store.open_incident("site", [])
    store.transition(incident_id, State.analyzed, "rca", report=report_for(incident_id))
    store.transition(incident_id, State.escalated, "nobody", reason="nobody")
    detail = client.get(f"/v1/incidents/{incident_id}").json()
    assert [(t["from_state"], t["to_state"]) for t in detail["timeline"]] == [
        (None, "open"),
        ("open", "analyzed"),
        ("analyzed", "escalated"),
    ]
    assert detail["timeline"][1]["note"] == "rca" and detail["timeline"][1]["at"]
    assert detail["report"]["candidates"][0]["fault"] == "cache_saturation"
    assert detail["runs"] == [] and detail["plan"] is None and detail["decision"] is None


def test_report_as_json_and_markdown(client, store) -> None:
    incident_id = store.open_incident("site", [])
    assert client.get(f"/v1/incidents/{incident_id}/report").status_code == 404
    report = report_for(incident_id)
    store.transition(incident_id, State.analyzed, "rca", report=report)
    as_json = client.get(f"/v1/incidents/{incident_id}/report")
    assert as_json.status_code == 200
    assert as_json.json()["candidates"][0]["component"] == "cache"
    markdown = client.get(f"/v1/incidents/{incident_id}/report", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text == render_markdown(report) and "cache_saturation" in markdown.text
    accepted = client.get(
        f"/v1/incidents/{incident_id}/report", headers={"accept": "text/markdown"}
    )
    assert accepted.text == render_markdown(report)
    bad = client.get(f"/v1/incidents/{incident_id}/report", params={"format": "pdf"})
    assert bad.status_code == 422
    assert client.get("/v1/incidents/nope/report").status_code == 404


def test_plan_and_engine_actions_without_an_engine(client, store) -> None:
    incident_id = store.open_incident("site", [])
    plan = client.get(f"/v1/incidents/{incident_id}/plan")
    assert plan.status_code == 404 and "no plan" in plan.json()["detail"]
    for action in ("reanalyze", "close", "escalate"):
        answer = client.post(f"/v1/incidents/{incident_id}/{action}", json={"comment": "why"})
        assert answer.status_code == 503, action
    assert client.get("/v1/automation").status_code == 503
    assert client.get("/v1/solutions").status_code == 503
    ready = client.get("/readyz").json()
    assert ready == {"ready": True, "checks": {"sql": {"ok": True, "detail": "sqlite"}}}
