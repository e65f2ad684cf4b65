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

Over HTTP the server (one uvicorn worker) runs on the first allowed core and the sender in
a process of its own on the others, ``shards`` requests in flight (bench_rw_sender.py): the
figure is what the worker takes, not the sender's cost too. Once without authentication
and once with it (a token checked, an audit entry written per request: the daemon's way).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from itertools import zip_longest
from pathlib import Path
from typing import Any

import uvicorn

from api.app import create_app
from api.auth import Auth, Role, TokenStore
from kernel.errors import MendloopError
from loop.monitor import Monitor
from loop.sources.remote_write import RemoteWriteDecoder, available_backend
from loop.sources.remote_write_intake import RemoteWriteReceiver
from loop.store import IncidentStore
from mendloop.bench_rw_sender import Sent, pin, send, sender_pool
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


Streams = list[list[bytes]]


def _bodies(
    catalog: Catalog,
    targets: int,
    shape: str,
    requests: int,
    start_s: float,
    per_series: int,
    shards: int = 1,
) -> tuple[Streams, list[list[list[dict[str, Any]]]], int]:
    """One stream of remote-write bodies per shard (the same samples as JSON batches too)
    and the samples per request. Shards hold disjoint series, each stream in time order,
    as Prometheus' shards (a series hashed to one shard): bodies of two shards may arrive
    in any order and still none is late. ``bulk``: each shard's every series,
    ``per_series`` samples each, ``requests`` times; ``prometheus``: ``requests`` bodies of
    2,000 samples in all, a shard's series in turn, each turn one second later."""
    encode = _encoder()
    labels = [
        {"__name__": name, "instance": f"site-{t}", "job": "bench"}
        for t in range(targets)
        for name in catalog
    ]
    streams: Streams = []
    batches: list[list[list[dict[str, Any]]]] = []
    for shard in range(shards):
        own = labels[shard::shards]
        bodies: list[bytes] = []
        jsons: list[list[dict[str, Any]]] = []
        for series in _series(own, shape, -(-requests // shards), start_s, per_series, requests):
            bodies.append(encode(series))
            jsons.append(_json(series))
        streams.append(bodies)
        batches.append(jsons)
    if shape == "bulk":
        return streams, batches, len(labels) * per_series // shards
    return streams, batches, PROMETHEUS_BATCH


def _series(
    own: list[dict[str, str]],
    shape: str,
    per_shard: int,
    start_s: float,
    per_series: int,
    requests: int,
) -> Iterator[list[tuple[dict[str, str], list[tuple[float, int]]]]]:
    if shape == "bulk":
        for r in range(requests):
            base = start_s + r * per_series
            yield [
                (ls, [(50.0 + k, int((base + k) * 1000)) for k in range(per_series)]) for ls in own
            ]
        return
    cursor = 0
    for _ in range(per_shard):
        at = range(cursor, cursor + PROMETHEUS_BATCH)
        cursor += PROMETHEUS_BATCH
        yield [(own[c % len(own)], [(50.0, int((start_s + c // len(own)) * 1000))]) for c in at]


def _interleaved(streams: Streams) -> list[bytes]:
    """The shards' bodies in the order they were made (one of each in turn)."""
    return [body for turn in zip_longest(*streams) for body in turn if body is not None]


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
    catalog: Catalog,
    targets: int = 10,
    requests: int = 20,
    per_series: int = 10,
    shards: int = 4,
    prometheus_requests: int = 200,
) -> dict[str, Any]:
    """Samples/s per path and shape (see the module docstring); ``requests`` bulk requests,
    ``prometheus_requests`` of 2,000 samples, ``shards`` of them in flight over HTTP."""
    if min(targets, requests, per_series, shards, prometheus_requests) < 1:
        raise MendloopError("remote-write bench sizes must be positive")
    out: dict[str, Any] = {"backend": str(available_backend()), "targets": targets}
    with _pinned(shards) as sender:
        out |= sender.describe()
        for shape, n in (("bulk", requests), ("prometheus", prometheus_requests)):
            out[shape] = _shape(catalog, targets, n, per_series, shape, sender)
    return out


def _shape(
    catalog: Catalog, targets: int, requests: int, per_series: int, shape: str, sender: Sender
) -> dict[str, Any]:
    now = time.time()
    start = now - 3000.0
    streams, batches, per_request = _bodies(
        catalog, targets, shape, requests, start, per_series, sender.shards
    )
    bodies = _interleaved(streams)
    total = per_request * len(bodies)

    # every series once, a while before: what a running receiver has seen already
    (warm,), _, _ = _bodies(catalog, targets, "bulk", 1, start - 1000.0, 1)
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

    http = _through_http(catalog, streams, batches, warm, per_request, sender)
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
    streams: Streams,
    batches: list[list[list[dict[str, Any]]]],
    warm: list[bytes],
    per_request: int,
    sender: Sender,
) -> dict[str, Any]:
    """The API served by uvicorn (one worker, in a thread of this process), the sender in a
    process of its own (mendloop/bench_rw_sender.py); with auth on, a token is checked and
    an audit entry written per request, as in the daemon."""
    total = per_request * sum(map(len, streams))
    results: dict[str, Any] = {}
    for key, auth in (("http", False), ("http_auth", True)):
        with _server(catalog, auth) as (url, monitor, token):
            sent = sender.send(url, "/api/v1/write", HEADERS | token, warm, streams)
            _all_ok(sent)
            results[f"{key}_samples_per_s"] = _rate(total, sent.seconds)
            results[f"{key}_accepted"] = monitor.stats()["counters"]["accepted"]
    with _server(catalog, False) as (url, _, _token):
        payloads = [[json.dumps(batch).encode() for batch in shard[:2]] for shard in batches]
        kind = {"content-type": "application/json"}
        sent = sender.send(url, "/v1/samples", kind, [], payloads)
        _all_ok(sent)
        results["http_json_samples_per_s"] = _rate(
            per_request * sum(map(len, payloads)), sent.seconds
        )
    return results


def _all_ok(sent: Sent) -> None:
    if set(sent.statuses) != {200}:
        raise MendloopError(f"bench requests answered {dict(sent.statuses)}")


class Sender:
    """The sending process and the cores: the server (this process) on the first allowed
    core, the sender on the others (on the same one when only one is allowed)."""

    def __init__(self, pool: ProcessPoolExecutor, shards: int) -> None:
        self.pool = pool
        self.shards = shards
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.before = set(allowed)
        self.server_cpus = set(allowed[:1])
        self.client_cpus = set(allowed[1:]) or self.server_cpus

    def send(
        self, url: str, path: str, headers: dict[str, str], warm: list[bytes], streams: Streams
    ) -> Sent:
        args = (url, path, headers, warm, streams, self.client_cpus or None)
        result: Sent = self.pool.submit(send, *args).result()
        return result

    def describe(self) -> dict[str, Any]:
        return {
            "shards": self.shards,
            "server_cpus": sorted(self.server_cpus),
            "sender_cpus": sorted(self.client_cpus),
        }


@contextmanager
def _pinned(shards: int) -> Iterator[Sender]:
    """This thread (and the server threads it starts) on the server's core meanwhile."""
    with sender_pool() as pool:
        sender = Sender(pool, shards)
        pin(sender.server_cpus)
        try:
            yield sender
        finally:
            pin(sender.before)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # served from a thread
        pass


@contextmanager
def _server(catalog: Catalog, auth: bool) -> Iterator[tuple[str, Monitor, dict[str, str]]]:
    """The API on a free port; with ``auth``, an operator token's header to send."""
    monitor = Monitor(catalog, window_s=300, max_batch=10**7, max_in_flight=10**8)
    with tempfile.TemporaryDirectory(prefix="mendloop-bench-rw-") as tmp:
        store = IncidentStore(f"sqlite:///{Path(tmp) / 'bench.db'}")
        app = create_app(
            store,
            submit=monitor.ingest,
            stats=monitor.stats,
            remote_write=RemoteWriteReceiver(monitor),
            max_body_bytes=256 << 20,
            auth=Auth.on(store.engine) if auth else None,
        )
        token = {}
        if auth:
            issued = TokenStore(store.engine).create("bench", Role.operator)
            token = {"authorization": f"Bearer {issued.token}"}
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
            yield url, monitor, token
        finally:
            server.should_exit = True
            thread.join(30)
            store.close()
