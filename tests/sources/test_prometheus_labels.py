"""The Prometheus pull keeps series identity (name + labels): a real Prometheus scraping a
real node_exporter that reports several mount points of one metric, pulled through
catalogs that select by label, leave some out, or do not choose at all."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loop.monitor import Monitor
from loop.sources.prometheus import PrometheusPoller, PrometheusSource
from rules.catalog import Catalog, load_catalog

FS = "node_filesystem_avail_bytes"


def entry(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "unit": "bytes", "subsystem": "host", "layer": "host", "bad": "low",
        "warn": 2.0, "crit": 1.0, "duration_s": 0, "sqi_role": "none",
        "description": f"{name} (test)", **extra,
    }  # fmt: skip


def catalog(tmp_path: Path, name: str, *entries: dict[str, Any]) -> Catalog:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"metrics": list(entries)}, sort_keys=False))
    return load_catalog(path)


ROOT = entry("disk_avail_root_bytes", metric=FS, match={"mountpoint": "/"})
SHM = entry("disk_avail_shm_bytes", metric=FS, match={"mountpoint": "/dev/shm"})
ROOT_USED = entry(  # a derived series the pulled Prometheus evaluates
    "disk_used_root_ratio",
    expr=f'1 - {FS}{{mountpoint="/"}} / node_filesystem_size_bytes{{mountpoint="/"}}',
)


@pytest.fixture(scope="module")
def prom(node_exporter: str, start_prometheus: Any) -> Any:
    prom = start_prometheus([node_exporter], job="node")

    def scraped() -> bool:  # two mount points, three scrapes each (the subquery has points)
        query = f"count(count_over_time({FS}[1m]) >= 3)"
        reply = httpx.get(f"{prom.url}/api/v1/query", params={"query": query}).json()
        return bool(reply["data"]["result"]) and float(reply["data"]["result"][0]["value"][1]) >= 2

    prom.wait_for(scraped, "node_exporter's mount points in Prometheus, three scrapes")
    return prom


def stored(prom: Any, query: str) -> dict[str, list[tuple[float, float]]]:
    """mountpoint -> the raw samples Prometheus holds for ``query``."""
    reply = httpx.get(f"{prom.url}/api/v1/query", params={"query": f"{query}[5m]"}).json()
    return {
        r["metric"].get("mountpoint", ""): [(float(t), float(v)) for t, v in r["values"]]
        for r in reply["data"]["result"]
    }


def pull(prom: Any, cat: Catalog) -> tuple[Monitor, Any]:
    monitor = Monitor(cat, window_s=300)
    with PrometheusSource.for_catalog(prom.url, cat) as source:
        parsed = source.recent(300)
    result = monitor.ingest(list(parsed.samples))
    return monitor, result


def test_each_mount_point_is_its_own_series(tmp_path: Path, prom: Any, node_exporter: str) -> None:
    monitor, result = pull(prom, catalog(tmp_path, "both", ROOT, SHM, ROOT_USED))
    assert not result.rejected, result.rejected[:3]
    truth = stored(prom, FS)
    for series, mount in (("disk_avail_root_bytes", "/"), ("disk_avail_shm_bytes", "/dev/shm")):
        stamps, values = monitor.window(node_exporter, series)
        taken = list(zip(stamps.tolist(), values.tolist(), strict=True))
        # exactly this mount point's samples (Prometheus may have scraped once more since)
        assert len(taken) >= 3 and taken == truth[mount][: len(taken)]
    ratio = monitor.latest(node_exporter, "disk_used_root_ratio")
    assert ratio is not None, (result, monitor.targets()) and 0.0 < ratio[1] < 1.0


def test_label_sets_no_entry_takes_are_counted(tmp_path: Path, prom: Any) -> None:
    monitor, result = pull(prom, catalog(tmp_path, "root", ROOT))
    others = sum(len(points) for mount, points in stored(prom, FS).items() if mount != "/")
    assert others > 0
    assert {r.reason for r in result.rejected} == {"no_catalog_match"}
    assert monitor.stats()["counters"]["no_catalog_match"] == len(result.rejected) >= others


def test_an_entry_that_does_not_choose_gets_one_label_set_and_counts_the_rest(
    tmp_path: Path, prom: Any, node_exporter: str
) -> None:
    """What the pull used to do (three mount points merged into one series, the wrong one
    winning, nothing counted) cannot happen: one label set owns the series, the others are
    refused as label_conflict, counted."""
    loose = entry("disk_avail_bytes", metric=FS)
    monitor, result = pull(prom, catalog(tmp_path, "loose", loose))
    conflicts = [r for r in result.rejected if r.reason == "label_conflict"]
    assert conflicts and len(conflicts) == len(result.rejected)
    stamps, values = monitor.window(node_exporter, "disk_avail_bytes")
    window = set(zip(stamps.tolist(), values.tolist(), strict=True))
    owners = [mount for mount, points in stored(prom, FS).items() if window <= set(points)]
    assert window and len(owners) == 1, owners  # every point is the same mount point's
    assert monitor.stats()["counters"]["label_conflict"] == len(conflicts)


def test_the_poller_keeps_each_label_set_apart(
    tmp_path: Path, prom: Any, node_exporter: str
) -> None:
    """The daemon's poller submits what is new per Prometheus series: the mount points,
    scraped at one instant under one name and target, each get every sample (it once kept
    one mark per name and target, so one mount point's samples hid the others')."""
    cat = catalog(tmp_path, "both", ROOT, SHM)
    monitor = Monitor(cat, window_s=300)

    def submit(batch: list[Any], refused: Any = None) -> object:
        return monitor.ingest(batch, refused=refused)

    with PrometheusSource.for_catalog(prom.url, cat) as source:
        poller = PrometheusPoller(source, submit, interval_s=0.5, lookback_s=300)
        with poller:
            deadline = time.monotonic() + 15
            while poller.polls < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
    assert poller.polls >= 3
    truth = stored(prom, FS)
    for series, mount in (("disk_avail_root_bytes", "/"), ("disk_avail_shm_bytes", "/dev/shm")):
        stamps, values = monitor.window(node_exporter, series)
        taken = list(zip(stamps.tolist(), values.tolist(), strict=True))
        assert len(taken) >= 3 and taken == truth[mount][: len(taken)], series
