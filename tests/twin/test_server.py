"""The twin's HTTP surface, served for real by uvicorn on an ephemeral port."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from kernel.models import Sample
from twin.model import ACTIONS, FAULTS, SERIES, Twin
from twin.server import TwinRunner, http_sink

SITE = "pm-site-1"
# name{label="value",...} value  (text exposition format 0.0.4, no timestamps)
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*)\} (\S+)$')
LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []
        self.fail_next = False

    def __call__(self, samples: list[Sample]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("sink down")
        self.batches.append(samples)


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """A tiny real HTTP receiver on a free port; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)


def parse_prometheus(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Strict enough to catch malformed output: every line is a comment or a sample."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = LINE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        assert types.get(name) == "gauge", f"{name} has no TYPE line before it"
        out[(name, frozenset(LABEL.findall(labels)))] = float(value)
    return out


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def runner(sink: ListSink) -> Iterator[TwinRunner]:
    r = TwinRunner(Twin(targets=(SITE, "pm-site-2"), seed=0), tick_s=0.05, sink=sink, port=0)
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def client(runner: TwinRunner) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runner.url, timeout=5) as c:
        yield c


def test_port_zero_is_resolved_and_served(runner: TwinRunner, client: httpx.Client) -> None:
    assert runner.port > 0 and runner.url == f"http://127.0.0.1:{runner.port}"
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["targets"] == [SITE, "pm-site-2"]
    assert body["ticks"] >= 1


def test_samples_reach_the_sink_and_a_failing_sink_is_survived(
    runner: TwinRunner, sink: ListSink, caplog: pytest.LogCaptureFixture
) -> None:
    wait_for(lambda: len(sink.batches) >= 3)
    batch = sink.batches[-1]
    assert len(batch) == 2 * len(SERIES) == 572 and {s.target for s in batch} == {SITE, "pm-site-2"}
    sink.fail_next = True
    seen = len(sink.batches)
    wait_for(lambda: len(sink.batches) >= seen + 2)  # the loop went on after the error
    assert runner.running
    assert "twin sink failed" in caplog.text


def test_metrics_is_prometheus_text(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    parsed = parse_prometheus(response.text)
    assert len(parsed) == 2 * 286
    assert {name for name, _ in parsed} == set(SERIES)
    assert response.text.count("# HELP ") == 286
    key = ("cache_hit_ratio", frozenset({("target", SITE), ("subsystem", "cache")}))
    assert 0.9 < parsed[key] <= 1.0


def test_fault_repair_rollback_clear_cycle(client: httpx.Client) -> None:
    r = client.post("/faults", json={"target": SITE, "fault": "cache_saturation"})
    assert r.status_code == 200 and r.json()["faults"] == ["cache_saturation"]

    def hit_ratio() -> float:
        return client.get(f"/state/{SITE}").json()["values"]["cache_hit_ratio"]

    wait_for(lambda: hit_ratio() < 0.6)

    wrong = client.post("/repair", json={"target": SITE, "action": "tune_db_io"}).json()
    assert wrong["cleared"] is False and wrong["faults"] == ["cache_saturation"]
    right = client.post("/repair", json={"target": SITE, "action": "scale_out_cache"}).json()
    assert right["cleared"] is True and right["faults"] == []
    wait_for(lambda: hit_ratio() > 0.9)

    back = client.post("/rollback", json={"target": SITE, "action": "scale_out_cache"}).json()
    assert back["rolled_back"] is True and back["faults"] == ["cache_saturation"]

    assert client.post("/clear", json={"target": SITE}).json() == {"cleared": [SITE]}
    state = client.get(f"/state/{SITE}").json()
    assert state["faults"] == [] and state["actions"] == []
    assert client.post("/clear").json() == {"cleared": [SITE, "pm-site-2"]}


def test_state_lists_targets_and_catalog(client: httpx.Client) -> None:
    body = client.get("/state").json()
    assert set(body["targets"]) == {SITE, "pm-site-2"}
    assert body["faults"] == sorted(FAULTS) and "cache_saturation" in body["faults"]
    assert body["actions"] == sorted(ACTIONS) and "scale_out_cache" in body["actions"]
    assert len(body["targets"][SITE]["values"]) == 286


def test_fault_intensity_is_accepted_and_checked(client: httpx.Client) -> None:
    r = client.post("/faults", json={"target": SITE, "fault": "voltage_sag", "intensity": 0.4})
    assert r.status_code == 200 and r.json()["fault_intensity"] == {"voltage_sag": 0.4}
    bad = client.post(
        "/faults", json={"target": SITE, "fault": "harmonic_distortion", "intensity": -1}
    )
    assert bad.status_code == 422
    assert client.get(f"/state/{SITE}").json()["faults"] == ["voltage_sag"]


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/faults", {"target": "nope", "fault": "cache_saturation"}, 404),
        ("/faults", {"target": SITE, "fault": "meltdown"}, 422),
        ("/faults", {"target": SITE}, 422),
        ("/repair", {"target": "nope", "action": "scale_out_cache"}, 404),
        ("/repair", {"target": SITE, "action": "reboot"}, 422),
        ("/rollback", {"target": SITE, "action": "reboot"}, 422),
        ("/clear", {"target": "nope"}, 404),
    ],
)
def test_bad_requests(
    client: httpx.Client, path: str, payload: dict[str, str], status: int
) -> None:
    r = client.post(path, json=payload)
    assert r.status_code == status, r.text


def test_unknown_target_state_is_404(client: httpx.Client) -> None:
    r = client.get("/state/nope")
    assert r.status_code == 404 and "unknown target" in r.json()["detail"]


def test_stop_releases_the_port_and_threads() -> None:
    r = TwinRunner(Twin(), tick_s=0.05, port=0)
    r.start()
    threads = [r._tick_thread, r._server_thread]
    assert all(t is not None and t.is_alive() for t in threads)
    url = r.url
    r.stop()
    r.stop()  # idempotent
    assert not r.running
    # its own threads, not a global count: other libraries start and end threads too
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=1)


def test_http_sink_posts_sample_batches(runner: TwinRunner) -> None:
    """Round trip through a tiny real ingest endpoint: what the sink sends parses back."""
    received: list[dict] = []
    ingest = FastAPI()

    @ingest.post("/ingest")
    def take(body: dict) -> dict:
        received.append(body)
        return {"accepted": len(body["samples"])}

    with serve(ingest) as url:
        sink = http_sink(f"{url}/ingest")
        try:
            with runner.lock:
                samples = runner.twin.latest()
            sink(samples)
        finally:
            sink.close()
    assert len(received) == 1
    got = [Sample.model_validate(s) for s in received[0]["samples"]]
    assert got == samples


def test_http_sink_honours_back_pressure_then_gives_up_loudly(runner: TwinRunner) -> None:
    """A 429 with Retry-After is retried; a receiver that stays busy raises, never drops."""
    from fastapi.responses import JSONResponse

    calls: list[int] = []
    busy_for = {"n": 1}
    ingest = FastAPI()

    @ingest.post("/ingest")
    def take(body: dict) -> JSONResponse:
        calls.append(len(body["samples"]))
        if len(calls) <= busy_for["n"]:
            return JSONResponse({"detail": "busy"}, status_code=429, headers={"Retry-After": "0"})
        return JSONResponse({"accepted": len(body["samples"])})

    with serve(ingest) as url:
        sink = http_sink(f"{url}/ingest")
        try:
            with runner.lock:
                samples = runner.twin.latest()
            sink(samples)  # busy once, then taken
            assert len(calls) == 2
            busy_for["n"] = 100
            with pytest.raises(httpx.HTTPStatusError):
                sink(samples)
            assert len(calls) == 2 + 1 + sink.retries
        finally:
            sink.close()
