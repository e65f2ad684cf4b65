"""The Prometheus source against a real Prometheus scraping a real twin every second."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest

from kernel.models import Sample
from loop.monitor import Monitor
from loop.sources.prometheus import (
    PrometheusPoller,
    PrometheusQueryError,
    PrometheusSource,
    PrometheusUnavailable,
)
from rules.catalog import load_catalog
from twin.model import Twin
from twin.server import TwinRunner

SITE = "pm-site-1"


class Recorder:
    """The twin's sink: every value it emitted, per series (what Prometheus may have seen)."""

    def __init__(self) -> None:
        self.values: dict[str, set[float]] = defaultdict(set)
        self.lock = threading.Lock()

    def __call__(self, samples: list[Sample]) -> None:
        with self.lock:
            for s in samples:
                self.values[s.series].add(s.value)

    def emitted(self, series: str) -> set[float]:
        with self.lock:
            return set(self.values[series])


@pytest.fixture(scope="module")
def twin() -> Iterator[tuple[TwinRunner, Recorder]]:
    recorder = Recorder()
    runner = TwinRunner(Twin(targets=(SITE,), seed=3), tick_s=1.0, sink=recorder, port=0)
    runner.start()
    yield runner, recorder
    runner.stop()


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def series_names(twin) -> set[str]:
    runner, _ = twin
    with runner.locked() as model:
        return {s.series for s in model.latest()}


@pytest.fixture(scope="module")
def prom(twin, start_prometheus, series_names):
    runner, _ = twin
    prom = start_prometheus([f"127.0.0.1:{runner.port}"])
    source = PrometheusSource.for_catalog(prom.url, sorted(series_names))

    def two_scrapes() -> bool:  # two points per series, so a range query has something
        result = source.recent(30)
        per_series = defaultdict(int)
        for s in result.samples:
            per_series[s.series] += 1
        return set(per_series) == series_names and min(per_series.values()) >= 2

    prom.wait_for(two_scrapes, "two scrapes of every twin series in Prometheus")
    source.close()
    return prom


@pytest.fixture
def source(prom, series_names) -> Iterator[PrometheusSource]:
    with PrometheusSource.for_catalog(prom.url, sorted(series_names)) as source:
        yield source


def test_instant_query_maps_every_twin_series_to_its_catalog_name(
    source, twin, series_names, catalog
):
    _, recorder = twin
    before = time.time()
    result = source.instant()
    assert result.issues == ()
    assert {s.series for s in result.samples} == series_names
    assert series_names <= set(catalog)
    for s in result.samples:
        assert s.target == SITE
        assert s.labels["job"] == "twin" and s.labels["instance"] == f"127.0.0.1:{twin[0].port}"
        assert "__name__" not in s.labels
        assert s.value in recorder.emitted(s.series), s  # exactly a value the twin emitted
        assert before - 1 <= s.ts <= time.time() + 1  # an instant query's ts is "now"


def test_range_query_returns_each_step(source, twin, series_names):
    _, recorder = twin
    end = time.time()
    result = source.range(end - 4, end, step=1.0)
    assert result.issues == ()
    per_series: dict[str, list[Sample]] = defaultdict(list)
    for s in result.samples:
        per_series[s.series].append(s)
    assert set(per_series) == series_names
    for series, samples in per_series.items():
        stamps = [s.ts for s in samples]
        assert stamps == sorted(stamps) and len(stamps) >= 2, series
        assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(stamps))
        assert all(s.value in recorder.emitted(series) for s in samples)
        assert {s.target for s in samples} == {SITE}


def test_target_may_come_from_the_instance_label(prom, twin, series_names):
    with PrometheusSource.for_catalog(
        prom.url, sorted(series_names), target_labels=("instance",)
    ) as source:
        result = source.instant()
    assert {s.target for s in result.samples} == {f"127.0.0.1:{twin[0].port}"}


def test_promql_expression_mapped_to_a_catalog_series(prom, series_names):
    queries = {"api_response_time_ms": "api_response_time_ms * 1", "cache_hit_ratio": "vector(1)"}
    with PrometheusSource(prom.url, queries) as source:
        result = source.instant()
    names = [s.series for s in result.samples]
    assert names == ["api_response_time_ms"]
    assert result.samples[0].target == SITE  # labels survive the arithmetic
    # vector(1) has no labels, so no target: reported, not filed under a made-up one
    assert [(i.metric, i.reason) for i in result.issues] == [("cache_hit_ratio", "bad_target")]
    assert "no target" in result.issues[0].error


def test_poller_submits_only_new_samples(prom, series_names, catalog):
    monitor = Monitor(catalog, window_s=60)
    batches: list[list[Sample]] = []
    results = []

    def submit(batch: list[Sample], refused=None) -> object:
        batches.append(batch)
        results.append(monitor.ingest(batch, refused=refused))
        return results[-1]

    with PrometheusSource.for_catalog(prom.url, sorted(series_names)) as source:
        poller = PrometheusPoller(source, submit, interval_s=0.5, lookback_s=5)
        with poller:
            deadline = time.monotonic() + 15
            while poller.polls < 6 and time.monotonic() < deadline:
                time.sleep(0.1)
        assert poller.polls >= 6 and poller.last is not None and poller.last.error is None
        assert not poller.running
    submitted = [s for batch in batches for s in batch]
    keys = [(s.series, s.target, s.ts) for s in submitted]
    assert len(keys) == len(set(keys)), "a sample was submitted twice"
    assert {s.series for s in submitted} == series_names
    # every one is new to the monitor too: all accepted, nothing late, duplicate or rejected
    assert sum(r.accepted for r in results) == len(submitted)
    assert not any(r.stale or r.rejected for r in results)
    assert monitor.latest(SITE, "cache_hit_ratio") is not None


def test_bad_promql_is_a_query_error(source):
    with pytest.raises(PrometheusQueryError) as info:
        source.query("rate(")
    message = str(info.value)
    assert source.url in message and "rate(" in message and "bad_data" in message
    assert info.value.status_code == 400


def test_unreachable_prometheus_is_unavailable():
    url = "http://127.0.0.1:9"  # discard port: nothing listens there
    source = PrometheusSource(url, {"cache_hit_ratio": "cache_hit_ratio"}, timeout_s=2)
    with source, pytest.raises(PrometheusUnavailable, match="unreachable"):
        source.instant()


def test_a_server_that_is_not_prometheus(twin):
    source = PrometheusSource(twin[0].url, {"cache_hit_ratio": "cache_hit_ratio"})
    with source, pytest.raises(PrometheusQueryError, match="HTTP 404"):
        source.instant()


def test_5xx_and_status_error_are_mapped():
    def handler(request: httpx.Request) -> httpx.Response:
        if b"overload" in request.content:
            return httpx.Response(503, json={"status": "error", "errorType": "unavailable",
                                             "error": "too many queries"})  # fmt: skip
        return httpx.Response(200, text="<html>proxy</html>")

    transport = httpx.MockTransport(handler)
    with PrometheusSource("http://prom", {}, transport=transport) as source:
        with pytest.raises(PrometheusUnavailable, match="HTTP 503, unavailable: too many"):
            source.query("overload")
        with pytest.raises(PrometheusUnavailable, match="not the API's JSON"):
            source.query("up")


def test_poller_survives_a_down_prometheus_and_stops_at_once():
    submitted: list[list[Sample]] = []
    source = PrometheusSource("http://127.0.0.1:9", {"m": "m"}, timeout_s=1)
    with source:
        poller = PrometheusPoller(source, lambda b, **_: submitted.append(b), interval_s=60)
        first = poller.poll_once()
        assert first.error is not None and "unreachable" in first.error and not submitted
        poller.start()
        with pytest.raises(RuntimeError, match="already started"):
            poller.start()
        started = time.monotonic()
        poller.stop()
        assert time.monotonic() - started < 2 and not poller.running
        poller.stop()  # twice is fine
    with pytest.raises(ValueError, match="interval_s"):
        PrometheusPoller(source, submitted.append, interval_s=0)


def test_poller_offers_samples_again_when_submit_fails(prom, series_names):
    calls: list[list[Sample]] = []

    def flaky(batch: list[Sample], refused=None) -> None:
        calls.append(batch)
        if len(calls) == 1:
            raise RuntimeError("intake busy")

    with PrometheusSource.for_catalog(prom.url, sorted(series_names)) as source:
        poller = PrometheusPoller(source, flaky, interval_s=1, lookback_s=30)
        with pytest.raises(RuntimeError):
            poller.poll_once()
        poller.poll_once()
    first, second = ({(s.series, s.ts) for s in batch} for batch in calls)
    assert first <= second  # nothing of the refused batch was skipped
