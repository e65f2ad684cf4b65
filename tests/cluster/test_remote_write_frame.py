"""The frame one worker forwards the part of a remote-write request another owns in:
decoded by the real remote-write decoder at the receiving worker, cut by target, framed,
and taken by the owner's real receiver into a real monitor (no PostgreSQL needed)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop.cluster.remote_write import (
    FrameDecoder,
    FrameHeader,
    encode_frame,
    read_frame,
    read_header,
    subset,
)
from loop.monitor import Monitor
from loop.sources.remote_write import RemoteWriteDecoder, RemoteWriteError
from loop.sources.remote_write_intake import RemoteWriteReceiver
from mendloop.bench_remote_write import _encoder
from rules.catalog import load_catalog


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def request(catalog, targets: list[str], stamp_ms: int) -> bytes:
    names = list(catalog)[:5]
    return _encoder()(
        [
            ({"__name__": n, "instance": t, "job": "x"}, [(float(i * 10 + k), stamp_ms)])
            for i, t in enumerate(targets)
            for k, n in enumerate(names)
        ]
    )


def frame_of(batch, rows) -> bytes:
    part = subset(batch, np.asarray(rows, dtype=np.intp))
    header = FrameHeader("w1", "tok", ("b",))
    return encode_frame(header, part.keys, part.series, part.timestamps_ms, part.values)


def test_the_owners_part_reaches_its_monitor_exactly_and_nothing_else(catalog) -> None:
    stamp = int(time.time() * 1000)
    batch = RemoteWriteDecoder().decode(request(catalog, ["a", "b"], stamp))
    rows = [r for r, labels in enumerate(batch.label_sets) if labels["instance"] == "b"]
    body = frame_of(batch, rows)
    assert read_header(body)[0] == FrameHeader("w1", "tok", ("b",))
    owner = Monitor(catalog)
    receiver = RemoteWriteReceiver(owner, decoder=FrameDecoder())
    outcome = receiver.receive(body)
    assert (outcome.samples, outcome.accepted) == (5, 5)
    assert owner.targets() == ["b"]
    for k, name in enumerate(list(catalog)[:5]):
        ts, values = owner.window("b", name)
        assert list(values) == [10.0 + k] and list(ts) == [stamp / 1000]
    again = receiver.receive(body)  # the sender's retry: kept once, counted as duplicate
    assert (again.accepted, again.duplicate) == (0, 5)
    assert receiver.counters()["requests"] == 2


def test_label_sets_are_resolved_once_and_a_full_cache_starts_afresh(catalog) -> None:
    decoder = FrameDecoder(cache_size=6)
    stamp = int(time.time() * 1000)
    batch = RemoteWriteDecoder().decode(request(catalog, ["a", "b"], stamp))
    first = decoder.decode(frame_of(batch, [0, 1, 2, 3, 4]))
    assert sorted(first.refilled) == [0, 1, 2, 3, 4]
    same = decoder.decode(frame_of(batch, [4, 3]))
    assert same.refilled == () and list(same.cache_slots) == [4, 3]
    full = decoder.decode(frame_of(batch, [5, 6]))  # 5 + 2 > 6: emptied first
    assert full.refilled == (0, 1) and [dict(s)["instance"] for s in full.label_sets] == ["b"] * 2
    with pytest.raises(RemoteWriteError):
        decoder.decode(frame_of(batch, list(range(10))))  # more than the cache holds


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.integers(0, 200))
def test_a_damaged_frame_is_refused_never_misread(catalog, noise: bytes, cut: int) -> None:
    batch = RemoteWriteDecoder().decode(request(catalog, ["a"], 1_700_000_000_000))
    good = frame_of(batch, [0, 1, 2])
    for body in (noise, good[:cut], good[: len(good) - 1 - cut % 20], good + noise[:1]):
        if body == good:
            continue
        try:
            frame = read_frame(body)
        except RemoteWriteError:
            continue
        raise AssertionError(f"a damaged frame was read: {frame.header}")
