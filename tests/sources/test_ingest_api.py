"""The push endpoints of ``api.ingest`` mounted on an app, over a real monitor."""

from __future__ import annotations

import gzip
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.ingest import ingest_router
from loop.monitor import Monitor
from rules.catalog import load_catalog


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def make_client(monitor: Monitor, **kw) -> TestClient:
    app = FastAPI()
    app.include_router(ingest_router(monitor.ingest, **kw))
    return TestClient(app)


@pytest.fixture
def monitor(catalog):
    return Monitor(catalog, window_s=30)


@pytest.fixture
def client(monitor):
    with make_client(monitor) as client:
        yield client


def ms(ts: float) -> int:
    return int(ts * 1000)


def post_text(client: TestClient, text: str | bytes, **headers: str):
    return client.post(
        "/v1/samples/prometheus",
        content=text,
        headers={"content-type": "text/plain; version=0.0.4", **headers},
    )


def otlp(*points: tuple[str, float, float], target: str = "pm-site-1") -> dict:
    metrics = [
        {"name": name, "gauge": {"dataPoints": [{"timeUnixNano": str(int(ts * 1e9)),
                                                 "asDouble": value}]}}
        for name, ts, value in points
    ]  # fmt: skip
    resource = {"attributes": [{"key": "host.name", "value": {"stringValue": target}}]}
    return {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": metrics}]}]}


# -- POST /v1/samples/prometheus ---------------------------------------------------------


def test_text_body_is_taken_and_bad_lines_are_reported_by_line(client, monitor):
    now = time.time()
    text = (
        "# TYPE cache_hit_ratio gauge\n"
        f'cache_hit_ratio{{target="a"}} 0.91 {ms(now)}\n'
        f'no_such_metric{{target="a"}} 1 {ms(now)}\n'
        'cache_hit_ratio{target="a" 0.5\n'
        f'db_io_wait_pct{{instance="b:9100"}} NaN {ms(now)}\n'
        f'db_io_wait_pct{{instance="b:9100"}} 7 {ms(now)}\n'
    )
    response = post_text(client, text)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["stale"], body["rejected_points"]) == (2, 0, 3)
    assert [(r["line"], r["reason"]) for r in body["rejected"]] == [
        (3, "unknown_metric"),
        (4, "parse_error"),
        (5, "invalid"),
    ]
    assert body["rejected"][0]["metric"] == "no_such_metric"
    assert "not in the catalog" in body["rejected"][0]["error"]
    assert monitor.latest("a", "cache_hit_ratio") == (ms(now) / 1000, 0.91)
    assert monitor.latest("b:9100", "db_io_wait_pct") == (ms(now) / 1000, 7.0)


def test_resending_the_same_text_counts_duplicates(client):
    text = f'cache_hit_ratio{{target="a"}} 0.9 {ms(time.time())}\n'
    assert post_text(client, text).json()["accepted"] == 1
    body = post_text(client, text).json()
    assert (body["accepted"], body["stale"], body["duplicate"]) == (0, 1, 1)


def test_samples_without_timestamp_get_the_arrival_time(client, monitor):
    before = time.time()
    assert post_text(client, 'cache_hit_ratio{target="a"} 0.8\n').status_code == 200
    ts, value = monitor.latest("a", "cache_hit_ratio")
    assert value == 0.8 and before <= ts <= time.time()


def test_nothing_usable_is_422_and_wrong_content_type_is_415(client):
    response = post_text(client, "garbage here\n")
    assert response.status_code == 422 and response.json()["rejected"][0]["line"] == 1
    response = client.post("/v1/samples/prometheus", json={"samples": []})
    assert response.status_code == 415 and "text/plain" in response.json()["detail"]
    assert post_text(client, b"\xff\xfe").status_code == 400


def test_gzip_bodies_and_size_limit(monitor):
    now = time.time()
    text = f'cache_hit_ratio{{target="z"}} 0.9 {ms(now)}\n'.encode()
    with make_client(monitor, max_body_bytes=200) as client:
        response = post_text(client, gzip.compress(text), **{"content-encoding": "gzip"})
        assert response.status_code == 200 and response.json()["accepted"] == 1
        assert post_text(client, b"x" * 201).status_code == 413
        bomb = gzip.compress(b"#" * 10_000)
        assert post_text(client, bomb, **{"content-encoding": "gzip"}).status_code == 413
        broken = post_text(client, b"not gzip", **{"content-encoding": "gzip"})
        assert broken.status_code == 400 and "gzip" in broken.json()["detail"]
        brotli = post_text(client, text, **{"content-encoding": "br"})
        assert brotli.status_code == 415


def test_default_target_and_name_map_are_configurable(monitor):
    with make_client(
        monitor, default_target="site-9", name_map={"redis_hit": "cache_hit_ratio"}.get
    ) as client:
        body = post_text(client, f"redis_hit 0.95 {ms(time.time())}\nother 1\n").json()
    assert body["accepted"] == 1 and body["rejected"][0]["reason"] == "unknown_metric"
    assert monitor.latest("site-9", "cache_hit_ratio")[1] == 0.95


def test_busy_intake_is_429_with_retry_after(catalog):
    busy = Monitor(catalog, max_in_flight=1)
    now = time.time()
    text = f'cache_hit_ratio{{target="a"}} 0.9 {ms(now)}\ndb_io_wait_pct{{target="a"}} 1\n'
    with make_client(busy) as client:
        response = post_text(client, text)
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        response = client.post("/v1/metrics", json=otlp(("cache_hit_ratio", now, 1), ("x", now, 1)))
        assert response.status_code == 429


def test_oversized_batch_is_413_and_counted_whole(catalog):
    small = Monitor(catalog, max_batch=1)
    now = time.time()
    text = f'cache_hit_ratio{{target="a"}} 0.9 {ms(now)}\ndb_io_wait_pct{{target="a"}} 1\n'
    with make_client(small) as client:
        response = post_text(client, text)
    body = response.json()
    assert response.status_code == 413 and body["batch_refused"] is True
    assert body["rejected_points"] == 2 and body["rejected"][0]["reason"] == "oversized_batch"


# -- POST /v1/metrics (OTLP/HTTP JSON) ---------------------------------------------------


def test_otlp_all_taken_has_no_partial_success(client, monitor):
    now = time.time()
    response = client.post("/v1/metrics", json=otlp(("cache_hit_ratio", now, 0.88)))
    assert response.status_code == 200
    body = response.json()
    assert "partialSuccess" not in body and body["accepted"] == 1
    assert monitor.latest("pm-site-1", "cache_hit_ratio")[1] == 0.88


def test_otlp_partial_success_counts_rejected_points(client):
    now = time.time()
    payload = otlp(("cache_hit_ratio", now, 0.88), ("http.server.duration", now, 3))
    payload["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].append(
        {"name": "weird", "futureType": {"dataPoints": [{}, {}]}}
    )
    body = client.post("/v1/metrics", json=payload).json()
    assert body["partialSuccess"]["rejectedDataPoints"] == "3"
    message = body["partialSuccess"]["errorMessage"]
    assert "metric 'http.server.duration'" in message and "metric 'weird'" in message
    assert body["accepted"] == 1 and {r["reason"] for r in body["rejected"]} == {
        "unknown_metric",
        "unsupported",
    }


def test_otlp_duplicates_are_a_warning(client):
    payload = otlp(("cache_hit_ratio", time.time(), 0.9))
    client.post("/v1/metrics", json=payload)
    body = client.post("/v1/metrics", json=payload).json()
    assert body["partialSuccess"] == {
        "rejectedDataPoints": "0",
        "errorMessage": "1 data point(s) not newer than the last one kept",
    }


def test_otlp_nothing_usable_is_400_with_a_status(client):
    response = client.post("/v1/metrics", json=otlp(("bogus", time.time(), 1)))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 3 and "bogus" in body["message"]
    assert body["partialSuccess"]["rejectedDataPoints"] == "1"
    response = client.post(
        "/v1/metrics", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]


def test_otlp_protobuf_is_415_pointing_at_json(client):
    response = client.post(
        "/v1/metrics", content=b"\x0a\x00", headers={"content-type": "application/x-protobuf"}
    )
    assert response.status_code == 415
    assert "JSON" in response.json()["detail"] and "http/json" in response.json()["detail"]
    response = client.post("/v1/metrics", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_refusals_are_counted_by_reason_once(client, monitor):
    """The parsers' refusals are booked in the monitor with the push; /v1/intake/sources is
    the part of them the parsers refused (inside the monitor's counters, never added)."""
    now = time.time()
    post_text(client, f'garbage\ncache_hit_ratio{{target="a"}} 0.9 {ms(now)}\n')
    client.post("/v1/metrics", json=otlp(("bogus", now, 1)))
    assert client.get("/v1/intake/sources").json() == {"parse_error": 1}
    counters = {k: v for k, v in monitor.stats()["counters"].items() if v}
    assert counters == {"accepted": 1, "parse_error": 1, "unknown_metric": 1}
