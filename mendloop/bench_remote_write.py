"""Remote-write throughput for `mendloop bench ingest`: decode only, the receiver in process
(decode + catalog resolution + monitor), and end to end through the API's HTTP endpoint,
next to the JSON path (`POST /v1/samples`) through the same server.

Two request shapes: ``bulk`` (every series of the catalog x targets, ``per_series``
samples each, one request per ``per_series`` seconds: an agent batching hard) and
``prometheus`` (2,000 samples per request, one per series: Prometheus' default
``max_samples_per_send``). Bodies are encoded before timing (protobuf + snappy, the dev
extra's libraries); each timed pass writes new timestamps, so nothing is a duplicate.
Every series is sent once before the timed requests (the steady state of a running
receiver: label sets resolved and cached); that first sight is timed on its own.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from kernel.errors import MendloopError
from loop.monitor import Monitor
from loop.sources.remote_write import RemoteWriteDecoder, available_backend
from loop.sources.remote_write_intake import RemoteWriteReceiver
from loop.store import IncidentStore
from rules.catalog import Catalog

PROMETHEUS_BATCH = 2_000
HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}
Encoder = Callable[[list[tuple[dict[str, str], list[tuple[float, int]]]]], bytes]


def _encoder() -> Encoder:
    """protobuf + cramjam (the dev extra): an encoder independent of our decoder."""
    try:
        import cramjam
        from google.protobuf import (
            descriptor_pb2,
            descriptor_pool,
            message_factory,
        )
    except ImportError as exc:
        raise MendloopError(f"bench remote-write needs the dev extra ({exc})") from exc
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="mendloop_bench_rw.proto", package="prometheus", syntax="proto3"
    )
    fields = {
        "Label": [("name", 1, f.TYPE_STRING, ""), ("value", 2, f.TYPE_STRING, "")],
        "Sample": [("value", 1, f.TYPE_DOUBLE, ""), ("timestamp", 2, f.TYPE_INT64, "")],
        "TimeSeries": [
            ("labels", 1, f.TYPE_MESSAGE, "Label"),
            ("samples", 2, f.TYPE_MESSAGE, "Sample"),
        ],
        "WriteRequest": [("timeseries", 1, f.TYPE_MESSAGE, "TimeSeries")],
    }
    for message, its in fields.items():
        msg = file.message_type.add(name=message)
        for name, number, kind, ref in its:
            label = f.LABEL_REPEATED if ref else f.LABEL_OPTIONAL
            field = msg.field.add(name=name, number=number, type=kind, label=label)
            if ref:
                field.type_name = f".prometheus.{ref}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))

    def encode(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
        req = request()
        for labels, samples in series:
            ts = req.timeseries.add()
            for name, text in labels.items():
                ts.labels.add(name=name, value=text)
            for value, stamp in samples:
                ts.samples.add(value=value, timestamp=stamp)
        return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))

    return encode


def _bodies(
    catalog: Catalog, targets: int, shape: str, requests: int, start_s: float, per_series: int
) -> tuple[list[bytes], list[list[dict[str, Any]]], int]:
    """Remote-write bodies, the same samples as JSON batches, and the samples per request."""
    encode = _encoder()
    labels = [
        {"__name__": name, "instance": f"site-{t}", "job": "bench"}
        for t in range(targets)
        for name in catalog
    ]
    bodies: list[bytes] = []
    batches: list[list[dict[str, Any]]] = []
    if shape == "bulk":
        for r in range(requests):
            base = start_s + r * per_series
            series = [
                (ls, [(50.0 + k, int((base + k) * 1000)) for k in range(per_series)])
                for ls in labels
            ]
            bodies.append(encode(series))
            batches.append(_json(series))
        return bodies, batches, len(labels) * per_series
    cursor = 0
    for r in range(requests):
        chosen = [labels[(cursor + i) % len(labels)] for i in range(PROMETHEUS_BATCH)]
        cursor += PROMETHEUS_BATCH
        stamp = int((start_s + r) * 1000)
        series = [(ls, [(50.0, stamp)]) for ls in chosen]
        bodies.append(encode(series))
        batches.append(_json(series))
    return bodies, batches, PROMETHEUS_BATCH


def _json(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> list[dict[str, Any]]:
    return [
        {
            "series": labels["__name__"],
            "labels": {"target": labels["instance"]},
            "ts": stamp / 1000,
            "value": value,
        }
        for labels, samples in series
        for value, stamp in samples
    ]


def _rate(samples: int, seconds: float) -> int:
    return round(samples / seconds) if seconds > 0 else 0


def bench_remote_write(
    catalog: Catalog, targets: int = 10, requests: int = 20, per_series: int = 10
) -> dict[str, Any]:
    """Samples/s per path and shape (see the module docstring)."""
    out: dict[str, Any] = {"backend": str(available_backend()), "targets": targets}
    for shape in ("bulk", "prometheus"):
        out[shape] = _shape(catalog, targets, requests, per_series, shape)
    return out


def _shape(
    catalog: Catalog, targets: int, requests: int, per_series: int, shape: str
) -> dict[str, Any]:
    now = time.time()
    start = now - 3000.0
    bodies, batches, per_request = _bodies(catalog, targets, shape, requests, start, per_series)
    total = per_request * len(bodies)

    # every series once, a while before: what a running receiver has seen already
    warm, _, _ = _bodies(catalog, targets, "bulk", 1, start - 1000.0, 1)
    decoder = RemoteWriteDecoder()
    decoder.decode(warm[0])
    t0 = time.perf_counter()
    for data in bodies:
        decoder.decode(data)
    decode_s = time.perf_counter() - t0

    monitor = Monitor(catalog, window_s=300, max_batch=10**7, max_in_flight=10**8)
    receiver = RemoteWriteReceiver(monitor)
    t0 = time.perf_counter()
    receiver.receive(warm[0])  # first sight: each label set resolved and claimed once
    first_sight_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    accepted = 0
    for data in bodies:
        accepted += receiver.receive(data).accepted
    receiver_s = time.perf_counter() - t0

    http = _through_http(catalog, bodies, batches, warm, per_request)
    return {
        "samples_per_request": per_request,
        "body_kb": round(sum(map(len, bodies)) / len(bodies) / 1024, 1),
        "decode_samples_per_s": _rate(total, decode_s),
        "receiver_samples_per_s": _rate(total, receiver_s),
        "receiver_accepted": accepted,
        "first_sight_label_sets_per_s": _rate(len(catalog) * targets, first_sight_s),
        **http,
    }


def _through_http(
    catalog: Catalog,
    bodies: list[bytes],
    batches: list[list[dict[str, Any]]],
    warm: list[bytes],
    per_request: int,
) -> dict[str, Any]:
    """The API served by uvicorn (one worker, in a thread), an httpx client posting."""
    total = per_request * len(bodies)
    results: dict[str, Any] = {}
    with _server(catalog) as (url, monitor), httpx.Client(base_url=url, timeout=120) as client:
        for data in warm:
            client.post("/api/v1/write", content=data, headers=HEADERS).raise_for_status()
        t0 = time.perf_counter()
        for data in bodies:
            client.post("/api/v1/write", content=data, headers=HEADERS).raise_for_status()
        results["http_samples_per_s"] = _rate(total, time.perf_counter() - t0)
        results["http_accepted"] = monitor.stats()["counters"]["accepted"]
    with _server(catalog) as (url, _), httpx.Client(base_url=url, timeout=300) as client:
        payloads = [json.dumps(batch).encode() for batch in batches[:5]]
        t0 = time.perf_counter()
        for payload in payloads:
            sent = client.post(
                "/v1/samples", content=payload, headers={"content-type": "application/json"}
            )
            sent.raise_for_status()
        results["http_json_samples_per_s"] = _rate(
            per_request * len(payloads), time.perf_counter() - t0
        )
    return results


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # served from a thread
        pass


@contextmanager
def _server(catalog: Catalog) -> Iterator[tuple[str, Monitor]]:
    monitor = Monitor(catalog, window_s=300, max_batch=10**7, max_in_flight=10**8)
    with tempfile.TemporaryDirectory(prefix="mendloop-bench-rw-") as tmp:
        store = IncidentStore(f"sqlite:///{Path(tmp) / 'bench.db'}")
        app = create_app(
            store,
            submit=monitor.ingest,
            stats=monitor.stats,
            remote_write=RemoteWriteReceiver(monitor),
            max_body_bytes=256 << 20,
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = _Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            yield url, monitor
        finally:
            server.should_exit = True
            thread.join(30)
            store.close()
