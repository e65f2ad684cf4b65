"""The remote-write bench: the shards' streams are what Prometheus' shards send (disjoint
series, each series in time order, every series of the catalog), decoded by our own
decoder; and a small run end to end, the sender in its own process, with and without
auth, takes every sample it sent (none late, none refused)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from loop.sources.remote_write import RemoteWriteDecoder
from mendloop.bench import TWIN_PACK
from mendloop.bench_remote_write import PROMETHEUS_BATCH, _bodies, bench_remote_write
from rules.catalog import Catalog, load_catalog


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(TWIN_PACK / "metrics.yaml")


@pytest.mark.parametrize(("shape", "shards"), [("prometheus", 3), ("bulk", 2), ("prometheus", 1)])
def test_streams_hold_disjoint_series_each_in_time_order(
    catalog: Catalog, shape: str, shards: int
) -> None:
    streams, batches, per_request = _bodies(catalog, 2, shape, 6, 1_700_000_000.0, 3, shards)
    assert len(streams) == len(batches) == shards
    owner: dict[bytes, int] = {}
    for shard, bodies in enumerate(streams):
        last: dict[bytes, int] = defaultdict(lambda: -1)
        decoder = RemoteWriteDecoder()
        for body, batch in zip(bodies, batches[shard], strict=True):
            decoded = decoder.decode(body)
            assert len(decoded.values) == per_request == len(batch)
            if shape == "prometheus":
                assert per_request == PROMETHEUS_BATCH
            stamps = decoded.timestamps_ms.tolist()
            for slot, stamp in zip(decoded.series.tolist(), stamps, strict=True):
                key = decoded.keys[slot]
                assert owner.setdefault(key, shard) == shard  # one shard per series
                assert stamp > last[key]  # never late, never a duplicate
                last[key] = stamp
    assert len(owner) == len(catalog) * 2  # every series is sent


def test_bench_takes_every_sample_through_http_with_the_sender_apart(catalog: Catalog) -> None:
    out = bench_remote_write(catalog, targets=1, requests=2, shards=2, prometheus_requests=4)
    assert out["shards"] == 2
    assert out["server_cpus"] and out["sender_cpus"]
    for shape in ("bulk", "prometheus"):
        figures = out[shape]
        sent = figures["receiver_accepted"]
        assert sent > 0
        # the HTTP servers also took the warm-up's samples once before the timed ones
        assert figures["http_accepted"] == figures["http_auth_accepted"] >= sent
        for key in ("http", "http_auth", "http_json", "receiver", "decode"):
            assert figures[f"{key}_samples_per_s"] > 0
