from pathlib import Path

import pytest

from kernel.errors import RuleFileError
from rules.catalog import load_catalog
from rules.compiler import load_rule_file, load_rules


def test_shipped_rules_and_catalog_load():
    catalog = load_catalog()
    assert "cache_hit_ratio" in catalog
    assert {r.fault for r in load_rules(catalog)} >= {"cache_saturation", "db_io_wait"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_unknown_series_is_refused_with_file_and_line(tmp_path):
    path = write(
        tmp_path,
        "rules:\n  - id: r1\n    fault: cache_saturation\n    component: c\n"
        "    summary: s\n    all:\n      - series: nope\n",
    )
    with pytest.raises(RuleFileError) as err:
        load_rule_file(path, load_catalog())
    assert f"{path}:7" in str(err.value) and "unknown metric 'nope'" in str(err.value)


def test_missing_field_is_named(tmp_path):
    path = write(
        tmp_path,
        "rules:\n  - id: r1\n    component: c\n    summary: s\n"
        "    all: [{series: cache_hit_ratio}]\n",
    )
    with pytest.raises(RuleFileError, match="fault: Field required"):
        load_rule_file(path, load_catalog())


def test_yaml_syntax_error_has_a_line(tmp_path):
    path = write(tmp_path, "rules:\n  - id: [unclosed\n")
    with pytest.raises(RuleFileError) as err:
        load_rule_file(path, load_catalog())
    assert err.value.line is not None


def test_catalog_entry_with_inverted_thresholds(tmp_path):
    path = tmp_path / "metrics.yaml"
    path.write_text(
        "metrics:\n  - name: m1\n    unit: ms\n    subsystem: s\n    layer: system\n"
        "    bad: high\n    warn: 10\n    crit: 5\n    duration_s: 1\n    sqi_role: none\n"
        "    description: d\n"
    )
    with pytest.raises(RuleFileError, match=r"metrics.yaml:2: metric m1: .*warn 10"):
        load_catalog(path)
