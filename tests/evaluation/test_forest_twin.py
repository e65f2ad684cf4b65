"""`mendloop eval forest --quick`: per-component IsolationForests next to the daemon's
per-series baselines on the real twin, learnt from the same fault-free day."""

import json

from mendloop.cli import main


def test_forest_and_baselines_name_the_faults_component_first(capsys):
    assert main(["eval", "forest", "--quick", "--seeds", "11", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # one JSON object on stdout
    assert result["seeds"] == [11] and result["scenarios"] == 12
    assert result["control_hours"] == 600 / 3600
    assert result["forest_first_right"] == 1.0
    assert result["baseline_first_right"] == 1.0
    assert result["wrong"] == []
    assert set(result["components"]) >= {"cache", "database", "meter", "edge"}
    assert result["score_call_ms"] > 0 and result["forest_false_rows_per_hour"] >= 0
    assert result["baseline_false_rows_per_hour"] == 0
