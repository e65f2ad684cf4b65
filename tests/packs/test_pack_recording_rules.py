"""A pack's Prometheus recording rules and its catalog cannot drift apart: an entry with both
``expr:`` (what the pull evaluates) and ``metric:`` (the series push senders deliver) names a
recording rule of the pack whose expression is the entry's, and every recording rule is
taken by such an entry. The real promtool checks the rule files and evaluates the
postgresql rules over per-database, per-state series: one series per server, as push needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kernel.config import PACKS_DIR
from rules.catalog import load_catalog

PACKS = sorted(p.parent for p in PACKS_DIR.glob("*/metrics.yaml"))


def words(expr: str) -> str:
    """An expression with its whitespace folded (YAML folding and indentation aside)."""
    return " ".join(expr.split())


def recording_rules(pack: Path) -> dict[str, str]:
    """record name -> expression, over every rule file of the pack's prometheus/."""
    records: dict[str, str] = {}
    for path in sorted((pack / "prometheus").glob("*.yml")):
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            for rule in group["rules"]:
                if "record" in rule:  # the files mendloop eval packs loads for push
                    assert path.name.endswith(".recording.yml"), f"{path}: {rule['record']}"
                    assert rule["record"] not in records, f"{path}: {rule['record']} twice"
                    records[rule["record"]] = words(rule["expr"])
    return records


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.name)
def test_recorded_series_and_catalog_entries_agree(pack: Path) -> None:
    catalog = load_catalog(pack / "metrics.yaml")
    recorded = {
        s.metric: words(s.expr)
        for s in catalog.values()
        if s.expr is not None and s.metric is not None
    }
    assert recording_rules(pack) == recorded


def test_the_postgresql_pack_records_its_aggregates() -> None:
    """The pack this was made for: every aggregate reaches push (not a vacuous pass above)."""
    catalog = load_catalog(PACKS_DIR / "postgresql" / "metrics.yaml")
    aggregates = {s.name for s in catalog.values() if s.expr is not None}
    assert aggregates == {
        "postgresql_connections_used_ratio",
        "postgresql_longest_transaction_seconds",
        "postgresql_lock_waits",
    }
    assert all(catalog[name].metric for name in aggregates)
    assert set(recording_rules(PACKS_DIR / "postgresql")) == {
        catalog[name].metric for name in aggregates
    }


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (prometheus)")


@needs_promtool
@pytest.mark.parametrize(
    "rules", sorted(PACKS_DIR.glob("*/prometheus/*.yml")), ids=lambda p: p.name
)
def test_promtool_accepts_the_rule_files(rules: Path) -> None:
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_postgresql_recording_rules_give_one_series_per_server(tmp_path: Path) -> None:
    """promtool evaluates the rules over what postgres_exporter reports per database and
    state: each recorded series carries only `instance`, so push files it under one
    (target, catalog series) and no second label set is refused as label_conflict."""
    rules = PACKS_DIR / "postgresql" / "prometheus" / "postgresql.recording.yml"
    pg = 'instance="pg-main",job="postgresql"'
    series: list[dict[str, Any]] = [
        {"series": f'pg_stat_activity_count{{{pg},datname="app",state="idle"}}', "values": "12x3"},
        {"series": f'pg_stat_activity_count{{{pg},datname="app",state="active"}}', "values": "2x3"},
        {"series": f'pg_stat_activity_count{{{pg},datname="postgres",state="idle"}}',
         "values": "1x3"},
        {"series": f"pg_settings_max_connections{{{pg}}}", "values": "20x3"},
        {"series": f'pg_stat_activity_max_tx_duration{{{pg},datname="app",state="active"}}',
         "values": "9x3"},
        {"series": f'pg_stat_activity_max_tx_duration{{{pg},datname="app",state="idle"}}',
         "values": "0x3"},
        {"series": f'pg_lock_waits_sessions{{{pg},datname="app"}}', "values": "1x3"},
        {"series": f'pg_lock_waits_sessions{{{pg},datname="postgres"}}', "values": "0x3"},
    ]  # fmt: skip
    expected = {
        "instance:pg_connections_used:ratio": 0.75,
        "instance:pg_stat_activity_max_tx_duration:max": 9,
        "instance:pg_lock_waits_sessions:sum": 1,
    }
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": name,
                        "eval_time": "2m",
                        "exp_samples": [{"labels": f'{name}{{instance="pg-main"}}', "value": v}],
                    }
                    for name, v in expected.items()
                ],
            }
        ],
    }
    path = tmp_path / "recording_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
