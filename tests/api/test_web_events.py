"""The event hub, stream tickets and the web page's endpoints, over a real uvicorn server,
a real SQLite store with real API tokens and the real monitor (tests/api/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.auth import Principal, Role
from api.events import EventHub, StreamClosed, StreamTickets, TooManyClients
from kernel.models import utcnow
from kernel.state import State
from loop.events import StageEvent

from .conftest import Served, Site


def stage(n: int, state: State = State.open) -> StageEvent:
    return StageEvent(f"inc-{n}", "pm-site-1", state, f"note {n}", utcnow())


async def drain(sub: Any, count: int) -> list[Any]:
    return [await sub.get(timeout=30) for _ in range(count)]


# -- the hub ----------------------------------------------------------------------------


def test_publish_from_another_thread_reaches_every_subscriber_in_order() -> None:
    async def scenario() -> None:
        hub = EventHub()
        async with hub.subscribe() as one, hub.subscribe() as two:
            assert hub.clients == 2
            worker = threading.Thread(target=lambda: [hub.publish(stage(i)) for i in range(5)])
            worker.start()
            worker.join()
            for sub in (one, two):
                got = await drain(sub, 5)
                assert [e.data["incident_id"] for e in got] == [f"inc-{i}" for i in range(5)]
                assert [e.id for e in got] == [1, 2, 3, 4, 5] and got[0].kind == "stage"
            assert await one.get(timeout=0.05) is None  # nothing more: keep-alive time
        assert hub.clients == 0

    asyncio.run(scenario())


def test_a_slow_client_gets_one_resync_instead_of_an_unbounded_backlog() -> None:
    async def scenario() -> None:
        hub = EventHub(max_queue=3)
        async with hub.subscribe() as sub:
            for i in range(10):
                hub.publish(stage(i))
            await asyncio.sleep(0)  # the hub's hand-overs run on this loop
            got = []
            while (event := await sub.get(timeout=0.05)) is not None:
                got.append(event)
            assert 1 <= len(got) <= 3 and got[0].kind == "resync"
            assert sub.dropped > 0
            hub.publish(stage(11))  # after the resync, new events flow again
            (event,) = await drain(sub, 1)
            assert event.data["incident_id"] == "inc-11"

    asyncio.run(scenario())


def test_a_reconnecting_client_gets_what_it_missed_or_a_resync() -> None:
    async def scenario() -> None:
        hub = EventHub(history=3)
        for i in range(5):
            hub.publish(stage(i))  # ids 1..5; ids 3..5 are kept
        async with hub.subscribe(after=3) as sub:
            assert [e.id for e in await drain(sub, 2)] == [4, 5]
        async with hub.subscribe(after=1) as sub:
            (event,) = await drain(sub, 1)
            assert event.kind == "resync"
        async with hub.subscribe(after=5) as sub:
            assert await sub.get(timeout=0.05) is None

    asyncio.run(scenario())


def test_close_ends_open_streams_and_refuses_new_ones_and_clients_are_bounded() -> None:
    async def scenario() -> None:
        hub = EventHub(max_clients=1)
        async with hub.subscribe() as sub:
            with pytest.raises(TooManyClients):
                async with hub.subscribe():
                    pass
            hub.close()
            with pytest.raises(StreamClosed):
                await sub.get(timeout=30)
        with pytest.raises(StreamClosed):
            async with hub.subscribe():
                pass
        hub.publish(stage(1))  # after close: ignored, never raises into the engine

    asyncio.run(scenario())


def test_automation_pause_is_its_own_event_and_odd_events_are_skipped() -> None:
    async def scenario() -> None:
        hub = EventHub()
        async with hub.subscribe() as sub:
            note = "automation paused everywhere by abe"
            hub.publish(StageEvent("", "*", None, note, utcnow(), "automation"))
            hub.publish(StageEvent("", "x", None, "no incident, no state", utcnow()))
            hub.publish(stage(1))
            first, second = await drain(sub, 2)
            assert first.kind == "automation" and first.data["note"] == note
            assert first.data["state"] is None and second.data["incident_id"] == "inc-1"

    asyncio.run(scenario())


def test_sse_framing() -> None:
    hub = EventHub()
    hub.publish(stage(7, State.analyzed))
    (event,) = list(hub._history)
    lines = event.sse().split("\n")
    assert lines[:2] == ["id: 1", "event: stage"] and event.sse().endswith("\n\n")
    data = json.loads(lines[2].removeprefix("data: "))
    assert data["state"] == "analyzed" and data["incident_id"] == "inc-7"


# -- tickets ----------------------------------------------------------------------------

ALICE = Principal(name="alice", role=Role.approver, token_id="x")


def test_a_ticket_opens_once_for_its_holder_and_its_role() -> None:
    tickets = StreamTickets()
    ticket = tickets.issue(ALICE)
    assert "alice" not in ticket.split(".")[1]  # signature part
    who = tickets.redeem(ticket)
    assert who is not None and (who.name, who.role, who.via) == ("alice", Role.approver, "ticket")
    assert tickets.redeem(ticket) is None  # single use


def test_forged_tampered_and_expired_tickets_are_refused() -> None:
    now = [1000.0]
    tickets = StreamTickets(ttl_s=60, clock=lambda: now[0])
    body, _, sig = tickets.issue(ALICE).partition(".")
    assert tickets.redeem(f"{body}.{'A' * len(sig)}") is None
    other = StreamTickets().issue(ALICE)  # another process's key
    assert tickets.redeem(other) is None
    assert tickets.redeem("garbage") is None and tickets.redeem("a.b") is None
    late = tickets.issue(ALICE)
    now[0] += 61
    assert tickets.redeem(late) is None


# -- over HTTP -------------------------------------------------------------------------


@pytest.fixture
def served(site: Site) -> Iterator[Served]:
    with Served(site.app, site.hub) as server:
        yield server


def read_events(url: str, want: int, headers: dict[str, str] | None = None) -> list[dict]:
    """The first ``want`` named events of a stream (hello included)."""
    events: list[dict] = []
    current: dict[str, Any] = {}
    with httpx.stream("GET", url, headers=headers, timeout=60) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if current:
                    events.append(current)
                    current = {}
                if len(events) >= want:
                    break
                continue
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return events


def test_the_stream_needs_a_ticket_or_a_token_and_carries_stage_moves(
    site: Site, served: Served
) -> None:
    viewer = site.token("vera", Role.viewer)
    assert httpx.get(f"{served.url}/v1/events").status_code == 401
    assert httpx.get(f"{served.url}/v1/events?ticket=forged.x").status_code == 401
    assert httpx.post(f"{served.url}/v1/events/ticket").status_code == 401
    auth = {"Authorization": f"Bearer {viewer}"}
    issued = httpx.post(f"{served.url}/v1/events/ticket", headers=auth).json()
    assert issued["expires_in"] == 60

    found: list[dict] = []
    reader = threading.Thread(
        target=lambda: found.extend(
            read_events(f"{served.url}/v1/events?ticket={issued['ticket']}", want=3)
        )
    )
    reader.start()
    deadline = time.monotonic() + 60
    while site.hub.clients == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    incident_id = site.open("pm-site-1")
    site.move(incident_id, State.analyzed, "root cause cache_saturation")
    reader.join(60)
    assert [e["event"] for e in found] == ["hello", "stage", "stage"]
    assert [e["data"]["state"] for e in found[1:]] == ["open", "analyzed"]
    assert found[2]["data"]["note"] == "root cause cache_saturation"
    # the reader hung up: its subscription goes at the next write (a keep-alive at most)
    deadline = time.monotonic() + 60
    while site.hub.clients and time.monotonic() < deadline:
        time.sleep(0.05)
    assert site.hub.clients == 0
    # the ticket was used: a second stream with it is refused
    again = httpx.get(f"{served.url}/v1/events?ticket={issued['ticket']}")
    assert again.status_code == 401
    # a client that saw id 1 reconnects (Last-Event-ID, or last_id=) and gets id 2 first
    replay = read_events(f"{served.url}/v1/events?last_id=1", want=2, headers=auth)
    assert replay[1]["id"] == "2" and replay[1]["data"]["state"] == "analyzed"


def test_me_series_sqi_and_static_files(site: Site, served: Served) -> None:
    viewer = {"Authorization": f"Bearer {site.token('vera', Role.viewer)}"}
    me = httpx.get(f"{served.url}/v1/web/me", headers=viewer).json()
    assert me == {"name": "vera", "role": "viewer", "auth": True}
    now = time.time()
    site.monitor.ingest(
        [
            {
                "series": "api_response_time_ms",
                "labels": {"target": "t1"},
                "ts": now - 3 + i,
                "value": 100.0 + i,
            }
            for i in range(3)
        ]
    )
    url = f"{served.url}/v1/targets/t1/series"
    assert httpx.get(url, params={"names": "api_response_time_ms"}).status_code == 401
    got = httpx.get(url, params={"names": "api_response_time_ms,cache_hit_ratio"}, headers=viewer)
    series = {s["name"]: s for s in got.json()["series"]}
    assert [p[1] for p in series["api_response_time_ms"]["points"]] == [100.0, 101.0, 102.0]
    assert (
        series["api_response_time_ms"]["unit"] == "ms" and series["cache_hit_ratio"]["points"] == []
    )
    thin = httpx.get(url, params={"names": "api_response_time_ms", "points": 2}, headers=viewer)
    assert [p[1] for p in thin.json()["series"][0]["points"]] == [100.0, 102.0]
    bad = httpx.get(url, params={"names": "no_such_metric"}, headers=viewer)
    assert bad.status_code == 422 and "no_such_metric" in bad.json()["detail"]
    some = httpx.get(url, params={"names": "sqi,api_response_time_ms"}, headers=viewer).json()
    assert some["unknown"] == ["sqi"] and len(some["series"]) == 1
    (row,) = httpx.get(f"{served.url}/v1/web/sqi", headers=viewer).json()
    assert row["target"] == "t1" and row["sqi"] is not None and "response_time" in row["roles"]

    page = httpx.get(f"{served.url}/ui/")
    assert page.status_code == 200 and "app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{served.url}/ui/static/app.js").status_code == 200
    assert httpx.get(f"{served.url}/ui/static/..%2Fweb.py").status_code == 404
    assert httpx.get(f"{served.url}/", follow_redirects=False).headers["location"] == "/ui/"


def test_region_view_from_the_monitor(site: Site, served: Served) -> None:
    viewer = {"Authorization": f"Bearer {site.token('vera', Role.viewer)}"}
    now = time.time()
    rates = {"pm-site-1": 40.0, "pm-site-2": 11.0, "pm-site-3": 11.0}
    site.monitor.ingest(
        [
            {"series": "cs_complaints_per_h", "labels": {"target": t}, "ts": now, "value": v}
            for t, v in rates.items()
        ]
    )
    tree = httpx.get(f"{served.url}/v1/web/regions", headers=viewer).json()
    assert tree["hot"] == ["Zhejiang > Hangzhou > Xihu > xihu-sa-01"] and tree["factor"] == 1.5


def test_a_viewer_cannot_approve_through_the_api(site: Site, served: Served) -> None:
    viewer = {"Authorization": f"Bearer {site.token('vera', Role.viewer)}"}
    incident_id = site.open("pm-site-1")
    for state in (State.analyzed, State.decided, State.awaiting_approval):
        site.move(incident_id, state)
    answer = httpx.post(
        f"{served.url}/v1/incidents/{incident_id}/approve", json={"comment": "x"}, headers=viewer
    )
    assert answer.status_code == 403 and site.approved == []


def test_openapi_names_the_role_of_the_page_endpoints(site: Site) -> None:
    paths = site.app.openapi()["paths"]
    for path in ("/v1/events", "/v1/web/me", "/v1/web/regions", "/v1/targets/{target}/series"):
        assert paths[path]["get"]["x-mendloop-role"] == "viewer", path
    assert paths["/v1/events/ticket"]["post"]["x-mendloop-role"] == "viewer"
