"""Micro-benchmark of remote-write decoding (loop/sources/remote_write.py), both backends.

    taskset -c 0 .venv/bin/python native/remote_write/bench.py [--json] [--python-requests N]

Requests look like Prometheus': node/HTTP/process series with 7-9 labels, realistic
timestamps and values, snappy-compressed. Shapes: ``prometheus`` (2,000 TimeSeries entries
of one sample each: what Prometheus sends), ``mixed`` (1,000 series of 1-10 samples) and
``dense`` (500 series of 10 samples): each a stream of 20 requests over the same series, so
the label-set cache is warm, as in a steady scrape stream. ``churn`` is the worst case: the
prometheus shape with 2,000 series never seen before in every request (every label set is
validated, cached and parsed). ``cold label sets`` is the parse alone.

Figures: ``decode`` = the backend alone (snappy + protobuf -> columns + blobs);
``decode+map`` = ``RemoteWriteDecoder.decode`` (that plus label-set mapping, counts and the
batch). Best of ``--repeat`` runs, samples per second on one core. Needs the dev extra
(protobuf and cramjam encode the requests). ``run()`` returns the figures for a caller
such as ``mendloop bench ingest``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from loop.sources import remote_write, remote_write_fallback
from loop.sources.remote_write import Backend, RemoteWriteDecoder, parse_label_blob

SHAPES = {  # series per request, samples per series (min, max), new series every request
    "prometheus": (2000, 1, 1, False),
    "mixed": (1000, 1, 10, False),
    "dense": (500, 10, 10, False),
    "churn": (2000, 1, 1, True),
}
REQUESTS_PER_SHAPE = 20


def _write_request_class() -> Any:
    """``prometheus.WriteRequest`` with only what the bench sends (labels and samples)."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="mendloop_bench_prompb.proto", package="prometheus", syntax="proto3"
    )
    specs = {
        "Label": [(1, "name", f.TYPE_STRING, ""), (2, "value", f.TYPE_STRING, "")],
        "Sample": [(1, "value", f.TYPE_DOUBLE, ""), (2, "timestamp", f.TYPE_INT64, "")],
        "TimeSeries": [
            (1, "labels", f.TYPE_MESSAGE, ".prometheus.Label"),
            (2, "samples", f.TYPE_MESSAGE, ".prometheus.Sample"),
        ],
        "WriteRequest": [(1, "timeseries", f.TYPE_MESSAGE, ".prometheus.TimeSeries")],
    }
    for name, fields in specs.items():
        msg = file.message_type.add(name=name)
        for number, field_name, kind, type_name in fields:
            label = f.LABEL_REPEATED if type_name else f.LABEL_OPTIONAL
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


def _series_labels(rng: random.Random, n: int) -> list[list[tuple[str, str]]]:
    """``n`` distinct Prometheus-like label sets, 7-9 labels each."""
    families = [
        ("node_cpu_seconds_total", lambda i: [("cpu", str(i % 16)), ("mode", "idle")]),
        ("node_filesystem_avail_bytes", lambda i: [("device", f"sd{i % 4}"), ("fstype", "ext4"),
                                                   ("mountpoint", f"/srv/vol{i % 7}")]),
        ("http_request_duration_seconds_bucket", lambda i: [("handler", f"/api/v1/r{i % 9}"),
                                                            ("le", str(0.005 * 2 ** (i % 12))),
                                                            ("method", "GET")]),
        ("process_resident_memory_bytes", lambda i: [("pid_class", f"c{i % 5}")]),
        ("redis_connected_clients", lambda i: [("addr", f"10.0.{i % 250}.7:6379"),
                                               ("role", "master")]),
    ]
    out = []
    for i in range(n):
        name, extra = families[i % len(families)]
        labels = [("__name__", name), ("instance", f"host-{i // 5:04d}.prod.example.net:9100"),
                  ("job", name.split("_")[0]), ("region", rng.choice(["eu-west-1", "us-east-2"])),
                  ("env", "production"), *extra(i)]
        out.append(sorted(labels))
    return out


def make_requests(shape: str, seed: int = 7) -> list[bytes]:
    """``REQUESTS_PER_SHAPE`` snappy bodies of one shape, over the same series."""
    n_series, lo, hi, churn = SHAPES[shape]
    rng = random.Random(seed)
    write_request = _write_request_class()
    series = _series_labels(rng, n_series)
    counts = [rng.randint(lo, hi) for _ in series]
    now = 1_760_000_000_000
    bodies = []
    for r in range(REQUESTS_PER_SHAPE):
        req = write_request()
        if churn:  # every series new: a pod id that changes with each request
            series = [sorted([*labels, ("pod", f"web-{r}-{i}")]) for i, labels in
                      enumerate(_series_labels(rng, n_series))]
        for labels, count in zip(series, counts, strict=True):
            ts = req.timeseries.add()
            for name, value in labels:
                ts.labels.add(name=name, value=value)
            for k in range(count):
                value = rng.choice([float(rng.randint(0, 10**9)), rng.random() * 100.0])
                ts.samples.add(value=value, timestamp=now + (r * hi + k) * 15_000)
        bodies.append(bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
    return bodies


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """(best seconds, units) of ``repeat`` runs of ``fn``, which returns how many units."""
    best, units = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        units = fn()
        best = min(best, time.perf_counter() - start)
    return best, units


def measure(backend: Backend, bodies: list[bytes], repeat: int, cold: bool) -> dict[str, float]:
    """Samples/s of the backend alone and of the whole decode; ``cold``: a new decoder for
    each pass (nothing cached), else one warmed on the first body (steady state)."""
    limits = (remote_write.DEFAULT_MAX_BYTES, remote_write.DEFAULT_MAX_SAMPLES,
              remote_write.DEFAULT_CACHE_SIZE)

    def backend_alone() -> Any:
        if backend is Backend.NATIVE:
            return importlib.import_module("mendloop_remote_write").Decoder(*limits)
        return remote_write_fallback.Decoder(*limits)

    warm_alone, warm = backend_alone(), RemoteWriteDecoder(backend=backend)
    warm_alone.decode(bodies[0])
    warm.decode(bodies[0])

    def decode_only() -> int:
        alone = backend_alone() if cold else warm_alone
        return sum(len(alone.decode(b)[2]) for b in bodies)

    def decode_and_map() -> int:
        decoder = RemoteWriteDecoder(backend=backend) if cold else warm
        return sum(decoder.decode(b).counts.samples for b in bodies)

    seconds, samples = _best(decode_only, repeat)
    seconds_map, _ = _best(decode_and_map, repeat)
    wire = sum(len(b) for b in bodies)
    return {
        "decode_samples_per_s": samples / seconds,
        "decode_map_samples_per_s": samples / seconds_map,
        "samples": samples,
        "compressed_mb_per_s": wire / seconds_map / 1e6,
    }


def cold_label_sets(n: int = 20_000) -> dict[str, float]:
    """Parsing label sets seen for the first time (series churn), per second."""
    blobs = [b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in labels)
             for labels in _series_labels(random.Random(1), n)]
    seconds, _ = _best(lambda: len([parse_label_blob(b) for b in blobs]), 3)
    return {"label_sets_per_s": n / seconds}


def run(repeat: int = 5, python_requests: int = 3) -> dict[str, Any]:
    backends = [Backend.PYTHON]
    if remote_write.available_backend() is Backend.NATIVE:
        backends.insert(0, Backend.NATIVE)
    figures: dict[str, Any] = {"cpu_affinity": sorted(os.sched_getaffinity(0)),
                               "loadavg": os.getloadavg(), "shapes": {}}
    for shape in SHAPES:
        bodies = make_requests(shape)
        figures["shapes"][shape] = {
            backend.value: measure(
                backend,
                bodies if backend is Backend.NATIVE else bodies[:python_requests],
                repeat if backend is Backend.NATIVE else 1,
                cold=SHAPES[shape][3],
            )
            for backend in backends
        }
    figures["cold_label_sets"] = cold_label_sets()
    figures["loadavg_after"] = os.getloadavg()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--python-requests", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args.repeat, args.python_requests)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    cpus, before, after = figures["cpu_affinity"], figures["loadavg"], figures["loadavg_after"]
    print(f"cpus {cpus}  load {before} -> {after}")
    for shape, per_backend in figures["shapes"].items():
        for backend, f in per_backend.items():
            print(f"{shape:10s} {backend:6s}  decode {f['decode_samples_per_s'] / 1e6:6.2f} M/s"
                  f"  decode+map {f['decode_map_samples_per_s'] / 1e6:6.2f} M/s"
                  f"  ({f['compressed_mb_per_s']:.1f} MB/s snappy)")
    print(f"cold label sets: {figures['cold_label_sets']['label_sets_per_s'] / 1e6:.2f} M/s parsed")


if __name__ == "__main__":
    main()
