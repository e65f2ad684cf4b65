"""The rule tester replays through the daemon's own Monitor + Analyzer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.errors import RuleFileError
from mendloop.rules_tester import replay, twin_batches, window_batches
from rules.catalog import load_catalog
from rules.compiler import load_rules

START = 1_800_000_000.0


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_twin_scenario_shows_rule_time_target_and_facts(catalog):
    run = replay(
        catalog,
        load_rules(catalog),
        twin_batches("voltage_sag", seconds=60, warmup_s=5, start=START),
        injected_at=START + 5,
    )
    data = run.as_dict()
    assert data["samples"]["accepted"] == 65 * 286
    fired = {f["rule"]: f for f in data["fired"]}
    assert set(fired) == {"pq-voltage-sag", "pq-voltage-sag-complaint-surge"}
    sag = fired["pq-voltage-sag"]
    assert sag["target"] == "pm-site-1" and sag["faults"] == ["voltage_sag"]
    assert 0 < sag["after_s"] <= 10 and sag["at"] == START + 5 + sag["after_s"]
    assert {f["series"] for f in sag["facts"]} == {"pq_voltage_rms_pct", "pq_voltage_sag_depth_pct"}
    assert all(f["value"] < 90 for f in sag["facts"] if f["series"] == "pq_voltage_rms_pct")
    surge = fired["pq-voltage-sag-complaint-surge"]
    assert surge["severity"] == "critical" and surge["after_s"] > sag["after_s"]
    assert data["quality"] == []


def test_fault_free_scenario_fires_nothing(catalog):
    run = replay(catalog, load_rules(catalog), twin_batches(None, seconds=120, start=START))
    assert run.firings == [] and run.quality == []


def write_window(path: Path, rows: list[dict]) -> Path:
    path.write_text("# a recorded window\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_window_replay_with_rejections_and_clock_skew(tmp_path, catalog):
    rows = []
    for i in range(6):
        ts = START + i
        rows += [
            {"target": "s1", "series": "cache_utilization_pct", "ts": ts, "value": 92 + i % 2},
            {"target": "s1", "series": "cache_hit_ratio", "ts": ts, "value": 0.45 + i / 100},
            {"target": "s1", "series": "db_penetration_pct", "ts": ts, "value": 12 + i % 3},
            {
                "target": "s2",
                "series": "cache_hit_ratio",
                "ts": ts + 120,
                "value": 0.4,
                "received": ts,
            },
            {"target": "s2", "series": "nope", "ts": ts, "value": 1},
        ]
    path = write_window(tmp_path / "w.jsonl", rows)
    run = replay(catalog, load_rules(catalog), window_batches(path))
    data = run.as_dict()
    assert [(f["rule"], f["target"], f["after_s"]) for f in data["fired"]] == [
        ("cache-saturation-penetration", "s1", 2.0)
    ]
    assert data["samples"]["unknown_metric"] == 6
    assert [(q["kind"], q["reason"], q["target"]) for q in data["quality"]] == [
        ("stale", "clock_skew", "s2")
    ]


def test_a_bad_window_line_has_its_line_number(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_text('{"target": "a", "series": "cache_hit_ratio", "ts": 1, "value": 1}\n{oops\n')
    with pytest.raises(RuleFileError) as err:
        window_batches(path)
    assert err.value.line == 2


def test_cli_json(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mendloop.cli",
            "rules",
            "test",
            "--scenario",
            "db_io_wait",
            "--seconds",
            "30",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert [f["rule"] for f in result["fired"]] == ["db-io-wait-saturation"]
    assert result["injected_at"] is not None
