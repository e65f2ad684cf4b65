"""The remote-write decoding core (loop/sources/remote_write.py), both backends.

Requests are encoded by an independent encoder: the protobuf library with the official
remote-write 1.0 schema built in code, compressed with cramjam's snappy. Every test runs on
the Python backend and, when it is built, the native one; the native one must be built
wherever cargo exists (./dev setup builds it), and then both must agree byte for byte on
valid, invalid and fuzzed bodies. The last test has a real Prometheus remote-write what it
scraped to a small receiver here.
"""

from __future__ import annotations

import http.server
import math
import operator
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import cramjam
import httpx
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop.sources import remote_write_fallback
from loop.sources.remote_write import (
    STALE_NAN_BITS,
    Backend,
    RefusalReason,
    RemoteWriteBatch,
    RemoteWriteDecoder,
    RemoteWriteError,
    available_backend,
    decode,
)

NATIVE = available_backend() is Backend.NATIVE
BACKENDS = [Backend.PYTHON, *([Backend.NATIVE] if NATIVE else [])]
STALE_NAN = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the independent encoder: prometheus/prompb types.proto + remote.proto, in code --------

def _schema() -> Any:
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="mendloop_test_prompb.proto", package="prometheus", syntax="proto3"
    )

    def message(name: str, *fields: tuple[int, str, int, bool, str]) -> None:
        msg = file.message_type.add(name=name)
        for number, field_name, kind, repeated, type_name in fields:
            field = msg.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL,
            )
            if type_name:
                field.type_name = type_name

    message("Label", (1, "name", f.TYPE_STRING, False, ""), (2, "value", f.TYPE_STRING, False, ""))
    message(
        "Sample", (1, "value", f.TYPE_DOUBLE, False, ""), (2, "timestamp", f.TYPE_INT64, False, "")
    )
    message(
        "Exemplar",
        (1, "labels", f.TYPE_MESSAGE, True, ".prometheus.Label"),
        (2, "value", f.TYPE_DOUBLE, False, ""),
        (3, "timestamp", f.TYPE_INT64, False, ""),
    )
    message(
        "BucketSpan",
        (1, "offset", f.TYPE_SINT32, False, ""),
        (2, "length", f.TYPE_UINT32, False, ""),
    )
    message(
        "Histogram",
        (1, "count_int", f.TYPE_UINT64, False, ""),
        (3, "sum", f.TYPE_DOUBLE, False, ""),
        (4, "schema", f.TYPE_SINT32, False, ""),
        (11, "positive_spans", f.TYPE_MESSAGE, True, ".prometheus.BucketSpan"),
        (12, "positive_deltas", f.TYPE_SINT64, True, ""),
        (15, "timestamp", f.TYPE_INT64, False, ""),
    )
    message(
        "TimeSeries",
        (1, "labels", f.TYPE_MESSAGE, True, ".prometheus.Label"),
        (2, "samples", f.TYPE_MESSAGE, True, ".prometheus.Sample"),
        (3, "exemplars", f.TYPE_MESSAGE, True, ".prometheus.Exemplar"),
        (4, "histograms", f.TYPE_MESSAGE, True, ".prometheus.Histogram"),
    )
    message(  # `type` is the MetricType enum on the wire: a varint, as int32 here
        "MetricMetadata",
        (1, "type", f.TYPE_INT32, False, ""),
        (2, "metric_family_name", f.TYPE_STRING, False, ""),
        (4, "help", f.TYPE_STRING, False, ""),
        (5, "unit", f.TYPE_STRING, False, ""),
    )
    message(
        "WriteRequest",
        (1, "timeseries", f.TYPE_MESSAGE, True, ".prometheus.TimeSeries"),
        (3, "metadata", f.TYPE_MESSAGE, True, ".prometheus.MetricMetadata"),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest = _schema()

Series = tuple[list[tuple[str, str]], list[tuple[float, int]]]


def request(series: list[Series], **extra: Any) -> Any:
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        for value, timestamp in samples:
            ts.samples.add(value=value, timestamp=timestamp)
    for meta in extra.get("metadata", []):
        req.metadata.add(**meta)
    return req


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def body(series: list[Series], **extra: Any) -> bytes:
    return snappy(request(series, **extra).SerializeToString())


def refusal(backend: Backend, data: bytes, **limits: int) -> RemoteWriteError:
    with pytest.raises(RemoteWriteError) as caught:
        RemoteWriteDecoder(backend=backend, **limits).decode(data)
    return caught.value


def outcome(backend: Backend, data: bytes, **limits: int) -> tuple[Any, ...]:
    """Everything a decode says, in comparable form (values bitwise, NaN payloads too)."""
    try:
        b = RemoteWriteDecoder(backend=backend, **limits).decode(data)
    except RemoteWriteError as exc:
        return ("refused", exc.reason, str(exc))
    values = b.values.view(np.uint64).tolist()
    return ("ok", b.keys, b.series.tolist(), b.timestamps_ms.tolist(), values, b.counts)


def expected(
    series: list[Series],
) -> tuple[list[dict[str, str]], list[int], list[int], list[float]]:
    """What a decode must give, computed here from the series as sent."""
    keys: list[dict[str, str]] = []
    index, ts_out, values = [], [], []
    for labels, samples in series:
        if not samples:
            continue
        key = {name: value for name, value in labels if value}
        if key not in keys:
            keys.append(key)
        for value, timestamp in samples:
            index.append(keys.index(key))
            ts_out.append(timestamp)
            values.append(value)
    return keys, index, ts_out, values


def same_floats(got: np.ndarray, want: list[float]) -> bool:
    want_bits = np.array(want, dtype=np.float64).view(np.uint64)
    return got.view(np.uint64).tolist() == want_bits.tolist()


@pytest.fixture(params=BACKENDS, ids=str)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


def test_native_decoder_is_built_wherever_cargo_is() -> None:
    if shutil.which("cargo") is None:
        pytest.skip("no cargo on this machine: the Python backend is the one in use")
    assert NATIVE, "cargo is here but mendloop_remote_write is not importable: run ./dev setup"


# --- valid requests ---------------------------------------------------------------------

NODE = [("__name__", "node_filesystem_avail_bytes"), ("instance", "h1:9100"), ("job", "node")]


def test_label_sets_are_not_merged_and_samples_keep_their_series(backend: Backend) -> None:
    mounts = [[*NODE, ("mountpoint", m)] for m in ("/", "/var", "/home")]
    series: list[Series] = [(labels, [(float(i), 1000 + i)]) for i, labels in enumerate(mounts)]
    series.append((mounts[0], [(9.0, 2000)]))  # the same set again: Prometheus does that
    batch = RemoteWriteDecoder(backend=backend).decode(body(series))
    assert [dict(s) for s in batch.label_sets] == [dict(m) for m in mounts]
    assert batch.series.tolist() == [0, 1, 2, 0]
    assert batch.timestamps_ms.tolist() == [1000, 1001, 1002, 2000]
    assert batch.values.tolist() == [0.0, 1.0, 2.0, 9.0]
    assert batch.series.dtype == np.int32 and batch.timestamps_ms.dtype == np.int64
    assert batch.counts.timeseries == 4 and batch.counts.label_sets == 3
    assert batch.keys[0] == (
        b"__name__\0node_filesystem_avail_bytes\0instance\0h1:9100\0job\0node\0mountpoint\0/\0"
    )
    assert not batch.values.flags.writeable


def test_unsorted_labels_and_empty_values_give_the_canonical_set(backend: Backend) -> None:
    shuffled = [("job", "node"), ("zone", ""), ("__name__", "up"), ("instance", "h1")]
    sorted_ = [("__name__", "up"), ("instance", "h1"), ("job", "node")]
    batch = RemoteWriteDecoder(backend=backend).decode(
        body([(shuffled, [(1.0, 1)]), (sorted_, [(1.0, 2)])])
    )
    assert batch.keys == (b"__name__\0up\0instance\0h1\0job\0node\0",)
    assert dict(batch.label_sets[0]) == {"__name__": "up", "instance": "h1", "job": "node"}
    assert batch.series.tolist() == [0, 0]


def test_defaults_negative_timestamps_and_special_floats(backend: Backend) -> None:
    samples = [(0.0, 0), (-1.5, -5), (math.inf, 2**62), (-math.inf, -(2**63)), (5e-324, 2**63 - 1)]
    batch = RemoteWriteDecoder(backend=backend).decode(body([([("__name__", "x")], samples)]))
    assert batch.timestamps_ms.tolist() == [t for _, t in samples]
    assert same_floats(batch.values, [v for v, _ in samples])


def test_stale_markers_and_nans_are_counted_apart_and_kept_bitwise(backend: Backend) -> None:
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
    samples = [(1.0, 1), (STALE_NAN, 2), (math.nan, 3), (nan_payload, 4), (STALE_NAN, 5)]
    batch = RemoteWriteDecoder(backend=backend).decode(body([([("__name__", "x")], samples)]))
    assert batch.counts.stale_markers == 2 and batch.counts.nan_values == 2
    assert batch.stale().tolist() == [False, True, False, False, True]
    assert same_floats(batch.values, [v for v, _ in samples])


def test_out_of_order_and_duplicate_timestamps_are_counted_and_kept(backend: Backend) -> None:
    a, b = [("__name__", "a")], [("__name__", "b")]
    series: list[Series] = [
        (a, [(1.0, 10), (2.0, 20), (3.0, 15)]),  # 15 < 20: out of order
        (b, [(1.0, 5)]),  # another set: its own clock
        (a, [(4.0, 20), (5.0, 30), (6.0, 19)]),  # 20 == newest: duplicate; 19: out of order
    ]
    batch = RemoteWriteDecoder(backend=backend).decode(body(series))
    assert batch.counts.out_of_order == 2 and batch.counts.duplicate_timestamps == 1
    assert batch.counts.samples == 7 and batch.timestamps_ms.tolist()[-1] == 19


def test_histograms_exemplars_and_metadata_are_counted_and_skipped(backend: Backend) -> None:
    metadata = [{"type": 1, "metric_family_name": "up", "help": "h"}]
    req = request([(NODE, [(1.0, 1)])], metadata=metadata)
    ts = req.timeseries[0]
    ts.exemplars.add(value=0.5, timestamp=1).labels.add(name="trace_id", value="abc")
    only_histograms = req.timeseries.add()
    only_histograms.labels.add(name="__name__", value="rpc_seconds")
    hist = only_histograms.histograms.add(count_int=3, sum=1.5, schema=1, timestamp=7)
    hist.positive_spans.add(offset=0, length=2)
    hist.positive_deltas.extend([1, 1])
    batch = RemoteWriteDecoder(backend=backend).decode(snappy(req.SerializeToString()))
    c = batch.counts
    assert (c.histograms_skipped, c.exemplars_skipped, c.metadata_skipped) == (1, 1, 1)
    assert c.series_without_samples == 1 and c.label_sets == 1 and c.samples == 1


def test_label_sets_are_parsed_once_and_cached_across_requests(backend: Backend) -> None:
    decoder = RemoteWriteDecoder(backend=backend, cache_size=2)
    first = decoder.decode(body([(NODE, [(1.0, 1)])]))
    second = decoder.decode(body([(NODE, [(2.0, 2)])]))
    assert first.label_sets[0] is second.label_sets[0]
    with pytest.raises(TypeError):
        operator.setitem(first.label_sets[0], "job", "other")  # shared: read-only
    for name in ("a", "b", "c"):  # a cache of 2: NODE is replaced
        batch = decoder.decode(body([([("__name__", name)], [(1.0, 1)])]))
        assert dict(batch.label_sets[0]) == {"__name__": name}
    again = decoder.decode(body([(NODE, [(1.0, 1)])]))
    assert again.label_sets[0] is not first.label_sets[0]  # parsed again
    assert again.label_sets[0] == first.label_sets[0]


def test_a_request_with_more_label_sets_than_the_cache_is_refused(backend: Backend) -> None:
    three = body([([("__name__", n)], [(1.0, 1)]) for n in "xyz"])
    exc = refusal(backend, three, cache_size=2)
    assert exc.reason is RefusalReason.TOO_LARGE and "distinct label sets" in str(exc)
    assert RemoteWriteDecoder(backend=backend, cache_size=3).decode(three).counts.label_sets == 3


def test_concurrent_decodes_share_one_decoder_safely(backend: Backend) -> None:
    """Threads on one decoder (the native one decodes without the GIL): no deadlock, and
    every batch carries its own label sets."""
    decoder = RemoteWriteDecoder(backend=backend, cache_size=4)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(30):
                name = f"m{(k + i) % 6}"
                batch = decoder.decode(body([([("__name__", name)], [(float(i), i)])]))
                assert dict(batch.label_sets[0]) == {"__name__": name}
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a decode never returned (deadlock?)"
    assert not errors, errors


DEADLOCK_PROBE = """
import threading, cramjam, mendloop_remote_write
native = mendloop_remote_write.Decoder(1 << 20, 1000, 64)
data = bytes(cramjam.snappy.compress_raw(bytes.fromhex(%r)))
def work():
    for _ in range(200):
        native.decode(data)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print("done")
"""


@pytest.mark.skipif(not NATIVE, reason="the native module is not built (no cargo)")
def test_the_native_module_never_deadlocks_with_the_gil() -> None:
    """Its own lock is taken without the GIL, so threads calling one native decoder
    directly (no facade lock) all finish. In a child process: a deadlock holds the GIL, so
    only a process-level timeout can report it."""
    raw = _raw([(NODE, [(1.0, t) for t in range(200)])])
    probe = subprocess.run(
        [sys.executable, "-c", DEADLOCK_PROBE % raw.hex()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.stdout.strip() == "done", probe.stderr


names = st.sampled_from(["a", "b", "c", "d", "e"])


@FUZZ
@given(st.lists(st.tuples(st.lists(names, min_size=1, max_size=4), st.booleans()), max_size=12))
def test_a_small_cache_never_mixes_up_label_sets(requests: list[tuple[list[str], bool]]) -> None:
    """Streams of requests, some refused midway, through a 3-slot cache: every batch still
    carries exactly its own label sets (slots reused, pinned, rolled back)."""
    decoders = [RemoteWriteDecoder(backend=b, cache_size=3) for b in BACKENDS]
    for wanted, spoil in requests:
        series: list[Series] = [([("__name__", n), ("job", "j")], [(1.0, 1)]) for n in wanted]
        raw = _raw(series) + (b"\x0a\x09" if spoil else b"")  # a truncated last series
        distinct = list(dict.fromkeys(wanted))
        for decoder in decoders:
            if spoil or len(distinct) > 3:
                with pytest.raises(RemoteWriteError):
                    decoder.decode(snappy(raw))
                continue
            batch = decoder.decode(snappy(raw))
            assert [s["__name__"] for s in batch.label_sets] == distinct
            assert [batch.label_sets[i]["__name__"] for i in batch.series] == wanted


def test_an_empty_request_is_an_empty_batch(backend: Backend) -> None:
    batch = RemoteWriteDecoder(backend=backend).decode(snappy(b""))
    assert batch.counts.samples == 0 and batch.label_sets == () and len(batch.series) == 0


def test_one_off_decode_uses_the_available_backend() -> None:
    assert isinstance(decode(body([(NODE, [(1.0, 1)])])), RemoteWriteBatch)


label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True)
label_values = st.text(st.characters(exclude_characters="\0", codec="utf-8"), max_size=12)
series_strategy = st.tuples(
    st.builds(
        lambda name, rest: [("__name__", name), *rest.items()],
        label_names,
        st.dictionaries(label_names.filter(lambda n: n != "__name__"), label_values, max_size=5),
    ),
    st.lists(
        st.tuples(st.floats(allow_nan=False), st.integers(-(2**63), 2**63 - 1)), max_size=4
    ),
)


@FUZZ
@given(st.lists(series_strategy, max_size=12))
def test_round_trip_of_requests_from_the_protobuf_library(series: list[Series]) -> None:
    keys, index, timestamps, values = expected(series)
    for backend in BACKENDS:
        batch = RemoteWriteDecoder(backend=backend).decode(body(series))
        assert [dict(s) for s in batch.label_sets] == keys
        assert batch.series.tolist() == index
        assert batch.timestamps_ms.tolist() == timestamps
        assert same_floats(batch.values, values)
        assert batch.counts.timeseries == len(series)


# --- refusals -------------------------------------------------------------------------------

def _raw(series: list[Series]) -> bytes:
    return request(series).SerializeToString()


def test_bad_snappy(backend: Backend) -> None:
    good = body([(NODE, [(1.0, 1)])])
    for data in (b"", b"\xff\xff\xff\xff\xff\xff", good[:-3], good[:1] + b"\x7f" + good[2:]):
        assert refusal(backend, data).reason is RefusalReason.BAD_SNAPPY, data
    bad_offset = b"\x05\x01\x00"  # a copy before any byte was written
    assert refusal(backend, bad_offset).reason is RefusalReason.BAD_SNAPPY


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (_raw([(NODE, [(1.0, 1)])])[:-3], "truncated"),
        (b"\x0a\x05\x0a\x03\x0a\x01", "length past the end"),
        (b"\x08\x01", "timeseries as a varint"),
        (b"\x2b\x2c", "a group (field 5)"),
        (b"\x07\x00", "field number 0"),
        (b"\x0a\x04\x12\x02\x08\x01", "a sample value as a varint"),
        (b"\x0a\x04\x12\x02\x09\x00", "truncated double"),
        (b"\x0a\x03\x12\x01\xff", "truncated varint"),
        (b"\x78" + b"\xff" * 10 + b"\x01", "varint overflow"),
        (b"\xff\xff\xff\xff\x7f\x00", "tag above 2^32"),
        (b"\x16\x00", "wire type 6 (field 2)"),
    ],
)
def test_bad_protobuf(backend: Backend, raw: bytes, where: str) -> None:
    exc = refusal(backend, snappy(raw))
    assert exc.reason is RefusalReason.BAD_PROTOBUF, where
    assert "byte" in str(exc)


def _with_bytes(placeholder: str, replacement: bytes) -> bytes:
    raw = _raw([([*NODE, ("path", placeholder)], [(1.0, 1)])])
    assert len(replacement) == len(placeholder)
    return snappy(raw.replace(placeholder.encode(), replacement))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_with_bytes("XXXX", b"\xff\xfeab"), "label value is not UTF-8"),
        (_with_bytes("XXXX", b"\xed\xa0\x80a"), "label value is not UTF-8"),  # a surrogate
        (_with_bytes("XXXX", b"a\0bc"), "label value contains NUL"),
        (snappy(_raw([([("__name__", "x"), ("", "v")], [(1.0, 1)])])), "empty label name"),
        (snappy(_raw([([("__name__", "x"), ("a", "1"), ("a", "2")], [])])), "duplicate label name"),
        (snappy(_raw([([("job", "x")], [(1.0, 1)])])), "no __name__ label"),
        (snappy(_raw([([("__name__", ""), ("job", "x")], [(1.0, 1)])])), "no __name__ label"),
    ],
)
def test_bad_labels(backend: Backend, data: bytes, problem: str) -> None:
    exc = refusal(backend, data)
    assert exc.reason is RefusalReason.BAD_LABELS and problem in str(exc)


def test_too_large_is_refused_before_allocating(backend: Backend) -> None:
    announces_4_gib = b"\xff\xff\xff\xff\x0f" + b"\x00" * 16
    assert refusal(backend, announces_4_gib).reason is RefusalReason.TOO_LARGE
    raw = _raw([(NODE, [(1.0, t) for t in range(50)])])
    assert refusal(backend, snappy(raw), max_bytes=len(raw) - 1).reason is RefusalReason.TOO_LARGE
    assert RemoteWriteDecoder(backend=backend, max_bytes=len(raw)).decode(snappy(raw))
    huge_body = b"\x00" * (32 + 1000 + 1000 // 6 + 1)
    assert refusal(backend, huge_body, max_bytes=1000).reason is RefusalReason.TOO_LARGE
    exc = refusal(backend, snappy(raw), max_samples=49)
    assert exc.reason is RefusalReason.TOO_LARGE and "49 samples" in str(exc)


# --- fuzzing: never a crash, only a known reason; both backends agree ----------------------

KNOWN = {RefusalReason.BAD_SNAPPY, RefusalReason.BAD_PROTOBUF, RefusalReason.TOO_LARGE,
         RefusalReason.BAD_LABELS}


FUZZ_LIMITS = {"max_bytes": 1 << 16, "max_samples": 500}
WARM = {b: RemoteWriteDecoder(backend=b, cache_size=8, **FUZZ_LIMITS) for b in BACKENDS}


def _check_agreement(data: bytes) -> None:
    """Fresh decoders of both backends, and long-lived ones that have seen the seed and
    every earlier example (their cache must not change a result), all agree."""
    results = [outcome(backend, data, **FUZZ_LIMITS) for backend in BACKENDS]
    for backend, decoder in WARM.items():
        decoder.decode(snappy(SEED))
        try:
            batch = decoder.decode(data)
        except RemoteWriteError as exc:
            results.append(("refused", exc.reason, str(exc)))
        else:
            results.append(("ok", *outcome_of(batch)))
        assert results[-1][0] == "ok" or results[-1][1] in KNOWN, (backend, results[-1])
    assert all(r == results[0] for r in results), results


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bodies(data: bytes) -> None:
    _check_agreement(data)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_protobuf_in_valid_snappy(raw: bytes) -> None:
    _check_agreement(snappy(raw))


SEED = _raw(
    [
        ([*NODE, ("mountpoint", "/")], [(1.0, 1), (STALE_NAN, 2)]),
        ([("__name__", "up"), ("job", "zürich")], [(0.0, -3)]),
    ]
)


byte_edits = st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), max_size=4)


@FUZZ
@given(byte_edits, st.integers(0, len(SEED)), st.booleans())
def test_fuzz_mutated_valid_requests(
    edits: list[tuple[int, int]], cut: int, compress: bool
) -> None:
    raw = bytearray(SEED)
    for at, byte in edits:
        raw[at] = byte
    data = snappy(bytes(raw[:cut])) if compress else bytes(raw)
    _check_agreement(data)


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.integers(0, 199), st.integers(0, 255))
def test_fuzz_mutated_snappy_frames(raw: bytes, at: int, byte: int) -> None:
    frame = bytearray(snappy(raw * 3))
    frame[at % len(frame)] = byte
    _check_agreement(bytes(frame))


def test_fallback_errors_carry_reason_and_message() -> None:
    with pytest.raises(remote_write_fallback.DecodeError) as caught:
        remote_write_fallback.Decoder(100, 10, 4).decode(b"\x80")
    assert caught.value.args == ("bad_snappy", "bad snappy length header")


# --- a real Prometheus remote-writing what it scraped ------------------------------------

FIXED = {"/": 1.5, "/var": 2.5, "/home": -3.25}  # one metric, three mount points
VANISHING_SCRAPES = 2  # served this often once remote-write runs, then gone: a stale marker


class _Receiver(http.server.ThreadingHTTPServer):
    """GET /metrics: what Prometheus scrapes. POST /write: what it remote-writes."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scrapes = 0
        self.first_write_at: int | None = None  # scrapes served when the first body came
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def metrics(self) -> bytes:
        with self.lock:
            self.scrapes += 1
            n, first = self.scrapes, self.first_write_at
        lines = ["# TYPE mendloop_rw_scrapes_total counter", f"mendloop_rw_scrapes_total {n}"]
        lines += [f'mendloop_rw_fs_avail{{mountpoint="{m}"}} {v}' for m, v in FIXED.items()]
        lines.append('mendloop_rw_city{city="Zürich"} 42')
        if first is None or n <= first + VANISHING_SCRAPES:
            lines.append("mendloop_rw_vanishing 7")
        return ("\n".join(lines) + "\n").encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_GET(self) -> None:
        payload = self.server.metrics()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.bodies.append(data)
            if self.server.first_write_at is None:
                self.server.first_write_at = self.server.scrapes
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # quiet: the test reports what matters
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[_Receiver]:
    """Module scope and asked for before ``start_prometheus``: it outlives Prometheus, whose
    shutdown would otherwise wait on a receiver that is gone."""
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


REMOTE_WRITE = """\
remote_write:
  - url: http://127.0.0.1:{port}/write
    queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 50}}
    metadata_config: {{send_interval: 1s}}
"""


def _decoded(receiver: _Receiver, backend: Backend) -> list[RemoteWriteBatch]:
    with receiver.lock:
        bodies = list(receiver.bodies)
    decoder = RemoteWriteDecoder(backend=backend)
    return [decoder.decode(b) for b in bodies]


def _samples(batches: list[RemoteWriteBatch]) -> dict[frozenset, list[tuple[int, int]]]:
    """Label set -> [(timestamp ms, value bits)] over all batches, in arrival order."""
    out: dict[frozenset, list[tuple[int, int]]] = {}
    for batch in batches:
        bits = batch.values.view(np.uint64).tolist()
        for i, ts, v in zip(batch.series.tolist(), batch.timestamps_ms.tolist(), bits, strict=True):
            out.setdefault(frozenset(batch.label_sets[i].items()), []).append((ts, v))
    return out


def test_a_real_prometheus_remote_writes_what_it_scraped(
    receiver: _Receiver, start_prometheus: Any
) -> None:
    port = receiver.server_address[1]
    instance = f"127.0.0.1:{port}"
    prom = start_prometheus([instance], job="rwtest")
    with prom.config.open("a") as config:  # the fixture's config has no remote_write: add it
        config.write(REMOTE_WRITE.format(port=port))
    os.kill(prom.proc.pid, signal.SIGHUP)  # Prometheus reloads its config on SIGHUP

    def labels(name: str, **extra: str) -> frozenset:
        return frozenset({"__name__": name, "job": "rwtest", "instance": instance, **extra}.items())

    def done() -> bool:
        batches = _decoded(receiver, available_backend())
        got = _samples(batches)
        stale = any(v == STALE_NAN_BITS for _, v in got.get(labels("mendloop_rw_vanishing"), []))
        metadata = sum(b.counts.metadata_skipped for b in batches)
        return stale and len(got.get(labels("mendloop_rw_scrapes_total"), [])) >= 3 and metadata > 0

    prom.wait_for(done, "remote-written scrapes, a stale marker and metadata", timeout=60)

    results = [_decoded(receiver, backend) for backend in BACKENDS]
    assert all(
        [outcome_of(b) for b in r] == [outcome_of(b) for b in results[0]] for r in results
    ), "the backends disagree on a real Prometheus body"
    got = _samples(results[0])
    for mount, value in FIXED.items():  # three series, never merged, each with its value
        points = got[labels("mendloop_rw_fs_avail", mountpoint=mount)]
        assert {v for _, v in points} == {struct.unpack("<Q", struct.pack("<d", value))[0]}
    assert {v for _, v in got[labels("mendloop_rw_city", city="Zürich")]} == {
        struct.unpack("<Q", struct.pack("<d", 42.0))[0]
    }
    counter = sorted(set(got[labels("mendloop_rw_scrapes_total")]))  # a resent batch: once
    values = [struct.unpack("<d", struct.pack("<Q", v))[0] for _, v in counter]
    assert values == sorted(values) and all(1 <= v <= receiver.scrapes for v in values)
    assert len({ts for ts, _ in counter}) == len(counter), "one value per scrape"
    vanishing = [v for _, v in sorted(got[labels("mendloop_rw_vanishing")])]
    assert vanishing[-1] == STALE_NAN_BITS and sum(b.counts.stale_markers for b in results[0]) >= 1

    # What was decoded is what Prometheus stored: the counter's raw samples from its TSDB.
    reply = httpx.get(
        f"{prom.url}/api/v1/query",
        params={"query": "mendloop_rw_scrapes_total[10m]"},
        timeout=10,
    ).json()
    stored = {(round(float(t) * 1000), float(v)) for t, v in reply["data"]["result"][0]["values"]}
    assert set(zip([ts for ts, _ in counter], values, strict=True)) <= stored


def outcome_of(batch: RemoteWriteBatch) -> tuple[Any, ...]:
    values = batch.values.view(np.uint64).tolist()
    return (batch.keys, batch.series.tolist(), batch.timestamps_ms.tolist(), values, batch.counts)
