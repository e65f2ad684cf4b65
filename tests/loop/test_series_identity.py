"""Series identity = name + labels (rules/selectors.py, loop/identity.py) and derived series
(rules/derive.py, loop/derived.py) through the monitor's validated door, as every push
intake and the Prometheus pull reach it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kernel.errors import InvalidSample, RuleFileError
from loop.monitor import Monitor
from loop.sources.prometheus import catalog_queries
from rules.catalog import Catalog, load_catalog
from rules.derive import parse_derivation
from rules.selectors import Matcher, parse_matchers


def entry(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "unit": "1", "subsystem": "host", "layer": "host", "bad": "high",
        "warn": 0.8, "crit": 0.9, "duration_s": 0, "sqi_role": "none",
        "description": f"{name} (test)", **extra,
    }  # fmt: skip


FS = "node_filesystem_avail_bytes"
ENTRIES = [
    entry("disk_avail_root_bytes", metric=FS, match={"mountpoint": "/"}),
    entry("disk_avail_data_bytes", metric=FS,
          match={"mountpoint": {"=~": "/data|/srv"}, "fstype": {"!~": "tmpfs|overlay"}}),
    entry("mem_used_bytes"),
    entry("mem_max_bytes"),
    entry("mem_used_ratio", derive="mem_used_bytes / mem_max_bytes"),
    entry("mem_free_bytes", derive="mem_max_bytes - mem_used_bytes"),
    entry("jobs_up", metric="up", target_label="job"),
]  # fmt: skip


def write(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "metrics.yaml"
    path.write_text(yaml.safe_dump({"metrics": entries}, sort_keys=False))
    return path


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return load_catalog(write(tmp_path, ENTRIES))


@pytest.fixture
def monitor(catalog: Catalog) -> Monitor:
    return Monitor(catalog, window_s=30)


def sample(series: str, value: float, ts: float, **labels: str) -> dict[str, Any]:
    return {"series": series, "labels": {"target": "h1", **labels}, "ts": ts, "value": value}


def test_three_mount_points_never_become_one_series(monitor: Monitor) -> None:
    now = time.time()
    result = monitor.ingest(
        [
            sample(FS, 1.0, now, mountpoint="/", fstype="ext4"),
            sample(FS, 2.0, now, mountpoint="/data", fstype="xfs"),
            sample(FS, 3.0, now, mountpoint="/data", fstype="tmpfs"),  # !~ tmpfs: no entry
            sample(FS, 4.0, now, mountpoint="/home", fstype="ext4"),
        ]
    )
    assert result.accepted == 2
    assert [(r.index, r.reason) for r in result.rejected] == [
        (2, "no_catalog_match"), (3, "no_catalog_match")
    ]  # fmt: skip
    assert monitor.latest("h1", "disk_avail_root_bytes") == (now, 1.0)
    assert monitor.latest("h1", "disk_avail_data_bytes") == (now, 2.0)
    assert monitor.stats()["counters"]["no_catalog_match"] == 2


def test_a_second_label_set_is_refused_not_merged(monitor: Monitor) -> None:
    now = time.time()
    first = monitor.ingest([sample(FS, 1.0, now, mountpoint="/data", fstype="xfs")])
    other = monitor.ingest([sample(FS, 9.0, now + 1, mountpoint="/srv", fstype="xfs")])
    assert first.accepted == 1 and other.accepted == 0
    assert other.rejected[0].reason == "label_conflict"
    assert "matchers" in other.rejected[0].error
    assert monitor.latest("h1", "disk_avail_data_bytes") == (now, 1.0)
    # once the owner's series expires, the slot is free for another label set
    assert monitor.expire(now + 10_000) == 1
    monitor.clock = lambda: now + 10_000
    again = monitor.ingest([sample(FS, 5.0, now + 10_000, mountpoint="/srv", fstype="xfs")])
    assert again.accepted == 1


def test_the_target_comes_from_the_entrys_target_label(monitor: Monitor) -> None:
    now = time.time()
    result = monitor.ingest(
        [sample("up", 1.0, now, job="node"), sample("up", 1.0, now, job="bad label")]
    )
    assert result.accepted == 1 and result.rejected[0].reason == "bad_target"
    assert monitor.latest("node", "jobs_up") == (now, 1.0)
    assert monitor.latest("h1", "jobs_up") is None


def test_derived_series_follow_their_operands(monitor: Monitor) -> None:
    now = time.time()
    first = monitor.ingest(
        [sample("mem_used_bytes", 50.0, now), sample("mem_max_bytes", 200.0, now + 1)]
    )
    assert monitor.latest("h1", "mem_used_ratio") == (now + 1, 0.25)
    assert monitor.latest("h1", "mem_free_bytes") == (now + 1, 150.0)
    assert {p.series for p in first.latest} >= {"mem_used_ratio", "mem_free_bytes"}
    assert first.accepted == 2  # derived points are not points sent
    monitor.ingest([sample("mem_used_bytes", 100.0, now + 2)])
    assert monitor.latest("h1", "mem_used_ratio") == (now + 2, 0.5)
    monitor.ingest([sample("mem_max_bytes", 0.0, now + 3)])  # a ratio over zero: no point
    assert monitor.latest("h1", "mem_used_ratio") == (now + 2, 0.5)
    monitor.ingest([sample("mem_used_bytes", 1.0, now + 100)])  # 97 s apart: no point
    assert monitor.latest("h1", "mem_free_bytes")[0] == now + 3
    counters = monitor.stats()["counters"]
    assert counters["derive_undefined"] == 1 and counters["derived"] == 5
    # a derived series cannot be pushed: it is computed
    assert monitor.ingest([sample("mem_used_ratio", 0.1, now + 4)]).rejected[0].reason == (
        "unknown_metric"
    )


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"derive": "mem_used_bytes / nope"}, "nope not in the catalog"),
        ({"derive": "mem_used_bytes / mem_used_ratio"}, "derived itself"),
        ({"derive": "mem_used_bytes * mem_max_bytes"}, "expected 'series OP series'"),
        ({"derive": "__import__('os')"}, "expected 'series OP series'"),
        ({"derive": "mem_used_bytes / mem_max_bytes", "metric": "x"}, "at most one of"),
        ({"derive": "mem_used_bytes / mem_max_bytes", "expr": "x"}, "at most one of"),
        ({"match": {"mountpoint": {"=~": "("}}}, "bad regex"),
        ({"match": {"mountpoint": {"=~": "a" * 300}}}, "longer than 256"),
        ({"match": {"mountpoint": {"~": "a"}}}, "operator must be one of"),
        ({"match": {"bad-name": "a"}}, "is not a label name"),
        ({"target_label": "not a label"}, "not a label name"),
    ],
)
def test_bad_entries_are_refused_with_file_and_line(
    tmp_path: Path, extra: dict[str, Any], problem: str
) -> None:
    entries = [*ENTRIES, entry("broken_entry", **extra)]
    with pytest.raises(RuleFileError) as caught:
        load_catalog(write(tmp_path, entries))
    assert problem in str(caught.value) and "broken_entry" in str(caught.value)


def test_an_expr_entry_is_pulled_by_its_expr_and_pushed_as_its_recorded_series(
    tmp_path: Path,
) -> None:
    """``expr:`` with ``metric:``: the pull queries the expression only (never the recorded
    series too: no double points) and files its points under the entry's name; push
    senders deliver the recording rule's series, taken by ``metric:`` and ``match:``."""
    used = entry("fs_used_ratio", expr="1 - a / b", metric="instance:fs_used:ratio",
                 match={"job": "node"})  # fmt: skip
    cat = load_catalog(write(tmp_path, [used]))
    assert dict(catalog_queries(cat)) == {"fs_used_ratio": "1 - a / b"}
    monitor = Monitor(cat, window_s=30)
    now = time.time()
    pushed = monitor.ingest([sample("instance:fs_used:ratio", 0.5, now, job="node")])
    assert pushed.accepted == 1 and monitor.latest("h1", "fs_used_ratio")[1] == 0.5
    pulled = monitor.ingest([sample("fs_used_ratio", 0.6, now + 1, job="node")])
    assert pulled.accepted == 1 and monitor.latest("h1", "fs_used_ratio")[1] == 0.6
    other = monitor.ingest([sample("instance:fs_used:ratio", 0.7, now + 2, job="other")])
    assert [r.reason for r in other.rejected] == ["no_catalog_match"]


def test_matchers_follow_promql() -> None:
    (eq, ne, re_, nre) = parse_matchers(
        {"a": "x", "b": {"!=": "x"}, "c": {"=~": "x|y"}, "d": {"!~": "x.*"}}
    )
    assert eq.accepts({"a": "x"}) and not eq.accepts({"a": "xx"}) and not eq.accepts({})
    assert ne.accepts({}) and not ne.accepts({"b": "x"})  # a missing label is ""
    assert re_.accepts({"c": "y"}) and not re_.accepts({"c": "xy"})  # anchored
    assert nre.accepts({"d": "yx"}) and not nre.accepts({"d": "xyz"})
    assert Matcher.parse("e", {"=~": ""}).accepts({})
    assert str(parse_derivation(" a/ b ")) == "a / b"


def test_an_unknown_name_and_ambiguity_are_told_apart(tmp_path: Path) -> None:
    both = [entry("a_bytes", metric=FS), entry("b_bytes", metric=FS, match={"x": "1"})]
    index = load_catalog(write(tmp_path, both)).index
    with pytest.raises(InvalidSample) as caught:
        index.resolve(FS, {"target": "h", "x": "1"})
    assert caught.value.reason == "ambiguous_match" and "a_bytes, b_bytes" in str(caught.value)
    with pytest.raises(InvalidSample) as caught:
        index.resolve("other", {"target": "h"})
    assert caught.value.reason == "unknown_metric"
    assert index.resolve(FS, {"target": "h", "x": "2"}).series == "a_bytes"
    assert index.resolve("a_bytes", {"target": "h"}).series == "a_bytes"  # not shadowed


def test_a_series_tells_the_label_set_that_feeds_it(monitor: Monitor) -> None:
    """What a finding on the series carries to from_label parameters (docs/SITES.md)."""
    now = time.time()
    monitor.ingest([sample(FS, 2.0, now, mountpoint="/data", fstype="xfs")])
    assert monitor.labels_of("h1", "disk_avail_data_bytes") == (
        ("fstype", "xfs"), ("mountpoint", "/data")
    )  # fmt: skip
    assert monitor.labels_of("h1", "disk_avail_root_bytes") == ()  # nothing fed it
    assert monitor.labels_of("nobody", "disk_avail_data_bytes") == ()
