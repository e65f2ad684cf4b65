"""The remote-write endpoint (api/remote_write.py) over a real monitor: series identity
through the catalog's matchers, counters by reason, refusals with clear statuses, and a
real Prometheus remote-writing what it scraped from a real node_exporter to the API."""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.auth import Auth, Role, TokenStore
from api.remote_write import remote_write_router
from kernel.config import PACKS_DIR
from loop.monitor import Monitor
from loop.sources.remote_write import STALE_NAN_BITS, RemoteWriteDecoder, RemoteWriteError
from loop.sources.remote_write_intake import RemoteWriteReceiver
from loop.store import IncidentStore
from rules.catalog import Catalog, load_catalog

STALE_NAN = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_request() -> Any:
    """prometheus/prompb WriteRequest (labels and float samples), built independently."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="mendloop_test_rw_intake.proto", package="prometheus", syntax="proto3"
    )
    label = file.message_type.add(name="Label")
    label.field.add(name="name", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    label.field.add(name="value", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    sample = file.message_type.add(name="Sample")
    sample.field.add(name="value", number=1, type=f.TYPE_DOUBLE, label=f.LABEL_OPTIONAL)
    sample.field.add(name="timestamp", number=2, type=f.TYPE_INT64, label=f.LABEL_OPTIONAL)
    ts = file.message_type.add(name="TimeSeries")
    ts.field.add(name="labels", number=1, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                 type_name=".prometheus.Label")
    ts.field.add(name="samples", number=2, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                 type_name=".prometheus.Sample")
    req = file.message_type.add(name="WriteRequest")
    req.field.add(name="timeseries", number=1, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                  type_name=".prometheus.TimeSeries")  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest = _write_request()


def body(*series: tuple[dict[str, str], list[tuple[float, float]]]) -> bytes:
    """(labels, [(value, unix seconds)]) per series -> a snappy-compressed WriteRequest."""
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in labels.items():
            ts.labels.add(name=name, value=value)
        for value, at in samples:
            ts.samples.add(value=value, timestamp=round(at * 1000))
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def entry(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "unit": "bytes", "subsystem": "host", "layer": "host", "bad": "low",
        "warn": 2e9, "crit": 1e9, "duration_s": 0, "sqi_role": "none",
        "description": f"{name} (test)", **extra,
    }  # fmt: skip


FS = "node_filesystem_avail_bytes"
ENTRIES = [
    entry("disk_avail_root_bytes", metric=FS, match={"mountpoint": "/"}, target_label="instance"),
    entry("disk_avail_shm_bytes", metric=FS, match={"mountpoint": "/dev/shm"},
          target_label="instance"),
    # two entries whose matchers overlap for /overlap: ambiguous, never a guess
    entry("disk_avail_overlap_a", metric=FS, match={"mountpoint": {"=~": "/overlap.*"}}),
    entry("disk_avail_overlap_b", metric=FS, match={"mountpoint": {"=~": "/over.*"},
                                                   "fstype": {"!=": "tmpfs"}}),
    entry("node_load1"),  # no matchers: the first label set per target owns it
]  # fmt: skip


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    path = tmp_path_factory.mktemp("catalog") / "metrics.yaml"
    path.write_text(yaml.safe_dump({"metrics": ENTRIES}, sort_keys=False))
    return load_catalog(path)


@pytest.fixture
def monitor(catalog: Catalog) -> Monitor:
    return Monitor(catalog, window_s=30)


@pytest.fixture
def receiver(monitor: Monitor) -> RemoteWriteReceiver:
    return RemoteWriteReceiver(monitor, decoder=RemoteWriteDecoder(cache_size=64))


@pytest.fixture
def client(receiver: RemoteWriteReceiver) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(remote_write_router(receiver, max_body_bytes=1 << 20))
    with TestClient(app) as client:
        yield client


def post(client: TestClient, data: bytes, path: str = "/api/v1/write", **headers: str) -> Any:
    return client.post(path, content=data, headers=HEADERS | headers)


def fs(mount: str, instance: str = "h1:9100", fstype: str = "ext4") -> dict[str, str]:
    labels = {"__name__": FS, "instance": instance, "job": "node"}
    return labels | {"mountpoint": mount, "fstype": fstype}


def accounted(answer: dict[str, Any]) -> int:
    return answer["accepted"] + answer["late"] + answer["duplicate"] + sum(
        answer["refused"].values()
    )


def test_each_mount_point_is_its_own_series_and_the_rest_is_counted(
    client: TestClient, monitor: Monitor
) -> None:
    now = time.time()
    data = body(
        (fs("/"), [(10.0, now)]),
        (fs("/dev/shm", fstype="tmpfs"), [(20.0, now)]),
        (fs("/home"), [(30.0, now), (31.0, now + 1)]),  # matches no entry
        (fs("/overlap"), [(40.0, now)]),  # matches two
        ({"__name__": "go_goroutines", "instance": "h1:9100"}, [(7.0, now)]),  # not in catalog
        ({"__name__": FS, "mountpoint": "/"}, [(1.0, now)]),  # no instance: the entry's target
        ({"__name__": "node_load1", "instance": "h1", "bad\nlabel": "x"}, [(1.0, now)]),
        ({"__name__": "node_load1", "instance": "h1", "job": "a\x1bb"}, [(1.0, now)]),
    )
    reply = post(client, data)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["samples"] == 9 == accounted(answer)
    assert answer["accepted"] == 2
    assert answer["refused"] == {
        "ambiguous_match": 1, "bad_labels": 2, "bad_target": 1, "no_catalog_match": 2,
        "unknown_metric": 1,
    }  # fmt: skip
    root = monitor.latest("h1:9100", "disk_avail_root_bytes")
    assert root == (pytest.approx(now, abs=1e-3), 10.0)
    assert monitor.latest("h1:9100", "disk_avail_shm_bytes")[1] == 20.0
    counters = monitor.stats()["counters"]
    assert counters["no_catalog_match"] == 2 and counters["ambiguous_match"] == 1
    assert counters["accepted"] == 2 and counters["unknown_metric"] == 1


def test_the_postgresql_packs_recorded_aggregates_arrive_through_push() -> None:
    """The pack's catalog takes its recording rules' series (metric:) while the pull
    evaluates the same entries' expr:; the exporter's raw per-database series are counted."""
    catalog = load_catalog(PACKS_DIR / "postgresql" / "metrics.yaml")
    monitor = Monitor(catalog, window_s=30)
    app = FastAPI()
    receiver = RemoteWriteReceiver(monitor, decoder=RemoteWriteDecoder(cache_size=64))
    app.include_router(remote_write_router(receiver, max_body_bytes=1 << 20))
    now, pg = time.time(), {"instance": "pg-main"}
    data = body(
        ({"__name__": "instance:pg_connections_used:ratio"} | pg, [(0.85, now)]),
        ({"__name__": "instance:pg_stat_activity_max_tx_duration:max"} | pg, [(9.0, now)]),
        ({"__name__": "instance:pg_lock_waits_sessions:sum"} | pg, [(1.0, now)]),
        ({"__name__": "pg_up", "job": "postgresql"} | pg, [(1.0, now)]),
        ({"__name__": "pg_stat_activity_count", "job": "postgresql", "datname": "app",
          "state": "idle"} | pg, [(17.0, now)]),
    )  # fmt: skip
    with TestClient(app) as client:
        answer = post(client, data).json()
    assert answer["accepted"] == 4 and answer["refused"] == {"unknown_metric": 1}
    assert monitor.latest("pg-main", "postgresql_connections_used_ratio")[1] == 0.85
    assert monitor.latest("pg-main", "postgresql_longest_transaction_seconds")[1] == 9.0
    assert monitor.latest("pg-main", "postgresql_lock_waits")[1] == 1.0
    assert monitor.latest("pg-main", "postgresql_up")[1] == 1.0


def test_two_label_sets_never_merge_into_one_series(client: TestClient, monitor: Monitor) -> None:
    now = time.time()
    load = {"__name__": "node_load1", "instance": "h1:9100", "job": "node"}
    first = post(client, body((load, [(0.5, now)]))).json()
    other = post(client, body((load | {"cpu": "1"}, [(9.0, now + 1)]))).json()
    again = post(client, body((load, [(0.7, now + 2)]))).json()
    assert first["accepted"] == 1 and again["accepted"] == 1
    assert other["accepted"] == 0 and other["refused"] == {"label_conflict": 1}
    assert monitor.latest("h1:9100", "node_load1")[1] == 0.7  # never the other label set's
    assert monitor.stats()["counters"]["label_conflict"] == 1
    # the other label set on another target is a series of its own
    elsewhere = post(client, body((load | {"instance": "h2:9100"}, [(2.0, now)])))
    assert elsewhere.json()["accepted"] == 1


def test_out_of_order_duplicates_and_stale_markers_are_counted(
    client: TestClient, monitor: Monitor, receiver: RemoteWriteReceiver
) -> None:
    now = time.time()
    points = [(1.0, now), (3.0, now + 2), (3.5, now + 2), (2.0, now + 1)]
    answer = post(client, body((fs("/"), points))).json()
    assert answer["accepted"] == 3 and answer["duplicate"] == 1 and accounted(answer) == 4
    assert monitor.latest("h1:9100", "disk_avail_root_bytes")[1] == 3.0
    resent = post(client, body((fs("/"), [(1.0, now), (STALE_NAN, now + 3)]))).json()
    assert resent["late"] == 1 and resent["refused"] == {"stale_marker": 1}
    counts = receiver.counters()
    assert counts["requests"] == 2 and counts["samples"] == 6
    assert counts["out_of_order"] == 1 and counts["duplicate_timestamps"] == 1
    assert client.get("/v1/intake/remote_write").json() == counts


@pytest.mark.parametrize(
    ("data", "headers", "status", "reason"),
    [
        (b"\xff\xff\xff\xff\xff\xff", {}, 400, "bad_snappy"),
        (bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a\x03")), {}, 400, "bad_protobuf"),
        (body(({"job": "x"}, [(1.0, 1.0)])), {}, 400, "bad_labels"),  # no __name__
        (body((fs("/"), [(1.0, 1.0)] * 200)), {}, 413, "too_large"),
        (b"x", {"content-encoding": "gzip"}, 415, None),
        (b"x", {"content-type": "application/json"}, 415, None),
        (b"x", {"content-type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
         415, None),
        (b"x", {"x-prometheus-remote-write-version": "2.0.0"}, 415, None),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_status_and_a_counter(
    monitor: Monitor, data: bytes, headers: dict[str, str], status: int, reason: str | None
) -> None:
    receiver = RemoteWriteReceiver(monitor, decoder=RemoteWriteDecoder(max_bytes=2000))
    app = FastAPI()
    app.include_router(remote_write_router(receiver, max_body_bytes=1 << 20))
    with TestClient(app) as client:
        reply = post(client, data, path="/v1/write", **headers)
        assert reply.status_code == status, reply.text
        if reason is not None:
            assert reply.json()["reason"] == reason
            assert receiver.counters()[f"refused_{reason}"] == 1
    assert monitor.stats()["counters"]["accepted"] == 0


def test_resolutions_are_cached_and_survive_expiry(
    client: TestClient, monitor: Monitor, receiver: RemoteWriteReceiver
) -> None:
    now = time.time()
    for i in range(3):
        answer = post(client, body((fs("/"), [(float(i), now + i)]), (fs("/x"), [(1.0, now)])))
        assert answer.json()["accepted"] == 1
    assert monitor.expire(now + 10_000) == 1  # the series is freed: its slot may be reused
    monitor.clock = lambda: now + 10_000
    answer = post(client, body((fs("/"), [(5.0, now + 10_000)]))).json()
    assert answer["accepted"] == 1
    assert monitor.latest("h1:9100", "disk_avail_root_bytes")[1] == 5.0


# --- a real Prometheus remote-writing node_exporter's series to the API ------------------


def httpx_wait(url: str, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not answer on {url}")


class Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # runs in a thread: no signal handlers
        pass


@pytest.fixture
def api_server(tmp_path: Path, monitor: Monitor) -> Iterator[tuple[str, str, RemoteWriteReceiver]]:
    """The API with token auth and the remote-write receiver, served on a free port."""
    store = IncidentStore(f"sqlite:///{tmp_path / 'api.db'}")
    token = TokenStore(store.engine).create("prometheus", Role.operator, by="test").token
    receiver = RemoteWriteReceiver(monitor)
    app = create_app(
        store, submit=monitor.ingest, stats=monitor.stats, auth=Auth.on(store.engine),
        remote_write=receiver,
    )  # fmt: skip
    port = free_port()
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    httpx_wait(f"http://127.0.0.1:{port}/healthz", "the API")
    yield f"http://127.0.0.1:{port}", token, receiver
    server.should_exit = True
    thread.join(15)
    store.close()


REMOTE_WRITE = """\
remote_write:
  - url: {url}/api/v1/write
    authorization: {{credentials: {token}}}
    queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 500}}
"""


def test_a_real_prometheus_remote_writes_node_exporter_series_to_the_api(
    api_server: tuple[str, str, RemoteWriteReceiver],
    node_exporter: str,
    start_prometheus: Any,
    monitor: Monitor,
) -> None:
    url, token, receiver = api_server
    bad = httpx.post(f"{url}/api/v1/write", content=body(), headers=HEADERS)
    assert bad.status_code == 401  # a push needs an operator token
    prom = start_prometheus([node_exporter], job="node")
    with prom.config.open("a") as config:
        config.write(REMOTE_WRITE.format(url=url, token=token))
    os.kill(prom.proc.pid, signal.SIGHUP)  # Prometheus reloads its config on SIGHUP

    def both() -> bool:
        return all(
            monitor.latest(node_exporter, s) is not None
            for s in ("disk_avail_root_bytes", "disk_avail_shm_bytes", "node_load1")
        )

    prom.wait_for(both, "/ and /dev/shm remote-written into their own series", timeout=60)
    counters = monitor.stats()["counters"]
    assert counters["unknown_metric"] > 0  # node_exporter's other series: counted, not taken
    assert counters["label_conflict"] == 0 and counters["ambiguous_match"] == 0
    assert receiver.counters()["requests"] >= 1
    metrics = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {token}"}).text
    assert 'mendloop_remote_write_total{counter="requests"}' in metrics
    assert 'mendloop_intake_samples{reason="unknown_metric"}' in metrics
    for series, mount in (("disk_avail_root_bytes", "/"), ("disk_avail_shm_bytes", "/dev/shm")):
        stamps, values = monitor.window(node_exporter, series)
        reply = httpx.get(
            f"{prom.url}/api/v1/query",
            params={"query": f'{FS}{{mountpoint="{mount}"}}[10m]'},
            timeout=10,
        ).json()
        (stored_series,) = reply["data"]["result"]  # exactly one label set per mount point
        stored = {(round(float(t), 3), float(v)) for t, v in stored_series["values"]}
        taken = {(round(float(t), 3), float(v)) for t, v in zip(stamps, values, strict=True)}
        assert taken and taken <= stored, (series, taken - stored)


# --- fuzz: whatever the label sets and values, every sample is accounted for once -----------

label_value = st.sampled_from(["/", "/dev/shm", "/home", "/overlap", "h1:9100", "h2", "", "a b"])
label_sets = st.dictionaries(
    st.sampled_from(["__name__", "instance", "mountpoint", "fstype", "job", "target"]),
    label_value | st.sampled_from([FS, "node_load1", "up"]),
    max_size=5,
)
samples = st.lists(
    st.tuples(
        st.sampled_from([1.0, -2.5, 0.0, float("nan"), float("inf"), STALE_NAN]),
        st.integers(-5, 5),
    ),
    max_size=4,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(label_sets, samples), max_size=6))
def test_fuzzed_requests_account_for_every_sample(
    monitor: Monitor, receiver: RemoteWriteReceiver, series: list[Any]
) -> None:
    now = time.time()
    before = monitor.stats()["counters"]
    shaped = [
        ({"__name__": FS, **labels} if "__name__" in labels else labels,
         [(value, now + offset) for value, offset in points])
        for labels, points in series
    ]  # fmt: skip
    try:
        outcome = receiver.receive(body(*shaped))
    except RemoteWriteError as exc:  # a label set the decoder refuses: the whole request
        assert exc.reason in ("bad_labels",)
        assert monitor.stats()["counters"] == before
        return
    sent = sum(len(points) for _, points in shaped)
    assert outcome.samples == sent
    assert outcome.accepted + outcome.late + outcome.duplicate + sum(
        outcome.refused.values()
    ) == sent
    after = monitor.stats()["counters"]
    booked = sum(after.values()) - sum(before.values())
    assert booked == sent  # every point once in /v1/intake, whatever became of it


def test_a_request_decoded_before_another_evicted_its_label_set_keeps_its_own_series(
    monitor: Monitor,
) -> None:
    """Two requests in flight (Prometheus' shards; a worker's split waits on SQL between
    decode and ingest): A decoded while X was cached, then B evicted X from that decoder
    slot and was ingested first. A's samples are X's, never filed under B's series."""
    receiver = RemoteWriteReceiver(monitor, decoder=RemoteWriteDecoder(cache_size=1))
    now = time.time()
    x = {"__name__": "node_load1", "instance": "hx", "job": "node"}
    y = {"__name__": "node_load1", "instance": "hy", "job": "node"}
    assert receiver.receive(body((x, [(1.0, now)]))).accepted == 1  # X cached, resolved
    a = receiver.decode(body((x, [(2.0, now + 1)])))  # X still cached: no refill
    b = receiver.decode(body((y, [(9.0, now + 1)])))  # evicts X: its slot now holds Y
    assert a.refilled == () and b.refilled == tuple(a.cache_slots.tolist())
    assert receiver.ingest(b).accepted == 1
    assert receiver.ingest(a).accepted == 1
    assert monitor.latest("hx", "node_load1")[1] == 2.0
    assert monitor.latest("hy", "node_load1")[1] == 9.0
