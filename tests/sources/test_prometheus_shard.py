"""Prometheus pull sharded by lease (several workers, docs/SCALING.md): a worker's queries
name only the targets it holds, against a real Prometheus scraping a real twin."""

from __future__ import annotations

import time

from loop.sources.prometheus import PrometheusSource
from twin.model import Twin
from twin.server import TwinRunner

TARGETS = ("pm-site-1", "pm-site-2")


def test_a_worker_pulls_only_the_targets_it_holds(start_prometheus) -> None:
    runner = TwinRunner(Twin(targets=TARGETS, seed=3), tick_s=1.0, port=0)
    runner.start()
    try:
        prom = start_prometheus([f"127.0.0.1:{runner.port}"])
        names = sorted({s for s in Twin(targets=TARGETS[:1]).series})[:20]
        with PrometheusSource.for_catalog(prom.url, names) as source:
            deadline = time.monotonic() + 60
            while {s.target for s in source.instant().samples} != set(TARGETS):
                assert time.monotonic() < deadline, "Prometheus never had both targets"
                time.sleep(0.5)
            source.shard = lambda: {"pm-site-2"}
            sharded = source.instant().samples
            assert sharded and {s.target for s in sharded} == {"pm-site-2"}
            assert {s.series for s in sharded} == set(names)
            source.shard = set  # holds nothing yet: asks nothing
            assert source.instant().samples == ()
            source.shard = None  # one worker: every target
            assert {s.target for s in source.instant().samples} == set(TARGETS)
    finally:
        runner.stop()
