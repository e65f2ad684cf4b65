"""Validation of rule files: every error with file:line and a reason, several per run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rules import RULES_DIR
from rules.catalog import load_catalog
from rules.compiler import faults_for
from rules.loader import check_paths
from rules.spec import Condition, parse_duration


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def check(catalog, *files: Path):
    return check_paths(list(files), catalog, faults_for())


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """rules:
  - id: good-one
    fault: cache_saturation
    summary: s
    all:
      - series: cache_hit_ratio
"""


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("10s", 10), ("500ms", 0.5), ("5m", 300), ("2h", 7200), ("1d", 86400), (3, 3), ("1.5m", 90)],
)
def test_durations(raw, seconds):
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["0s", "-5s", "soon", "10 parsecs", True, ""])
def test_bad_durations_are_refused(raw):
    with pytest.raises(ValueError):
        parse_duration(raw)


def test_signal_keys_name_what_is_watched():
    assert Condition(series="x").key == "x"
    assert Condition.model_validate({"series": "x", "above": 5, "for": "10s"}).key == "x>5@10s"
    assert Condition(series="x", rises_by=20, per=60).key == "x:delta>20/60s"
    assert Condition(series="x", absent_for=30).key == "x:absent30s"


def test_shipped_rules_check_clean(catalog):
    specs, errors = check(catalog, RULES_DIR)
    assert errors == []
    assert any(s.sequence for s in specs)
    assert {s.component for s in specs} >= {"cache", "power_quality"}


def test_every_error_of_a_file_is_reported_with_its_line(tmp_path, catalog):
    path = write(
        tmp_path,
        "bad.yaml",
        """rules:
  - id: r-unknown
    fault: no_such_fault
    summary: s
    all:
      - series: cache_hit_ratio
      - series: not_a_metric
  - id: r-operator
    fault: cache_saturation
    summary: s
    all:
      - series: cache_hit_ratio
        greater_than: 5
  - id: r-window
    fault: voltage_sag
    summary: s
    sequence:
      - series: pq_voltage_rms_pct
      - series: cs_complaints_power_quality_per_h
    within: 5s
  - id: r-duration
    fault: voltage_sag
    summary: s
    all:
      - series: pq_voltage_rms_pct
        for: -3s
""",
    )
    specs, errors = check(catalog, path)
    assert specs == []  # a file with errors is refused whole
    got = {(e.line, e.reason.split(":")[0]) for e in errors}
    lines = {e.line: e.reason for e in errors}
    assert "unknown fault 'no_such_fault'" in lines[3]
    assert "unknown metric 'not_a_metric'" in lines[7]
    assert "unknown operator 'greater_than'" in lines[13]
    assert "impossible window" in lines[20] and "10s" in lines[20]  # complaints need 10 s
    assert "must be positive" in lines[26]
    assert len(got) == 5
    assert all(str(e).startswith(f"{path}:{e.line}: rule r-") for e in errors)


def test_duplicate_id_across_files(tmp_path, catalog):
    first = write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", "# another file\n" + GOOD)
    specs, errors = check(catalog, tmp_path)
    assert [s.id for s in specs] == ["good-one"]
    (error,) = errors
    assert (error.path, error.line) == (str(second), 3)
    assert f"duplicate rule id good-one (first at {first}:2)" in error.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "    all:\n      - series: cache_hit_ratio\n        rises_by: 1\n        below: 2\n",
            "mixes",
        ),
        ("    all:\n      - series: cache_hit_ratio\n    within: 1m\n", "at least two"),
        (
            "    sequence:\n      - series: cache_hit_ratio\n      - series: db_io_wait_pct\n",
            "within",
        ),
        ("    all:\n      - series: cache_hit_ratio\n        per: 1m\n", "per/counter only"),
        ("    targets: ['pm site']\n    all:\n      - series: cache_hit_ratio\n", "pattern"),
        ("    severity: apocalyptic\n    all:\n      - series: cache_hit_ratio\n", "severity"),
        ("    all:\n      - series: cache_hit_ratio\n        for: soon\n", "unparsable"),
    ],
)
def test_shape_errors(tmp_path, catalog, body, reason):
    path = write(
        tmp_path,
        "r.yaml",
        "rules:\n  - id: r1\n    fault: cache_saturation\n    summary: s\n" + body,
    )
    _, errors = check(catalog, path)
    assert errors and reason in errors[0].reason, errors
    assert errors[0].line is not None and errors[0].line >= 2


def test_cli_exit_2_one_line_per_error(tmp_path):
    second = (
        GOOD.removeprefix("rules:\n")
        .replace("good-one", "other")
        .replace("cache_saturation", "bogus")
    )
    bad = write(tmp_path, "bad.yaml", GOOD.replace("cache_hit_ratio", "nope") + second)
    run = subprocess.run(
        [sys.executable, "-m", "mendloop.cli", "rules", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2, run
    assert run.stdout.strip().splitlines() == [
        f"{bad}:6: rule good-one: unknown metric 'nope'",
        f"{bad}:8: rule other: unknown fault 'bogus' (not in the site's domain)",
    ]
    as_json = subprocess.run(
        [sys.executable, "-m", "mendloop.cli", "rules", "check", str(bad), "--json"],
        capture_output=True,
        text=True,
    )
    assert as_json.returncode == 2
    result = json.loads(as_json.stdout)
    assert result["ok"] is False
    assert [(e["line"], e["file"]) for e in result["errors"]] == [(6, str(bad)), (8, str(bad))]


def test_cli_ok_on_the_shipped_rules():
    run = subprocess.run(
        [sys.executable, "-m", "mendloop.cli", "rules", "check", "--json"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "pq-voltage-sag-complaint-surge" in json.loads(run.stdout)["rules"]
