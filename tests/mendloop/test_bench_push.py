"""The bench scale pusher's remote-write template: the same request, decoded, as the
protobuf encoder of bench_remote_write builds (an encoder independent of ours), for any
values, a zero among them, and timestamps whose varint lengths differ."""

from __future__ import annotations

import numpy as np
import pytest

from loop.sources.remote_write import RemoteWriteDecoder
from mendloop.bench_push import Template, varint
from mendloop.bench_remote_write import _encoder

LABELS = [
    {"__name__": name, "target": target, "job": "bench"}
    for target in ("scale-0", "scale-1")
    for name in ("cpu_util", "mem_util", "disk_io_wait")
]


@pytest.mark.parametrize("stamp_ms", [1, 300, 1_733_500_000_123, 2**40 + 7])
def test_template_requests_decode_as_protobufs_do(stamp_ms: int) -> None:
    template = Template(LABELS)
    rng = np.random.default_rng(stamp_ms % 1000)
    for _ in range(3):
        values = rng.normal(50, 20, len(LABELS))
        values[1] = 0.0  # protobuf omits a zero; the template writes it: both decode to 0
        ours = RemoteWriteDecoder().decode(template.encode(values, stamp_ms))
        pairs = zip(LABELS, values.tolist(), strict=True)
        theirs = RemoteWriteDecoder().decode(_encoder()([(ls, [(v, stamp_ms)]) for ls, v in pairs]))
        assert ours.keys == theirs.keys
        assert np.array_equal(ours.series, theirs.series)
        assert np.array_equal(ours.values, theirs.values)
        assert list(ours.timestamps_ms) == [stamp_ms] * len(LABELS)


def test_varint_is_protobufs() -> None:
    assert [varint(v) for v in (0, 1, 127, 128, 300)] == [
        b"\x00",
        b"\x01",
        b"\x7f",
        b"\x80\x01",
        b"\xac\x02",
    ]
