"""Replay from raw samples, end to end: the daemon records an incident's samples while it
remediates it on the twin; `mendloop replay ID --json` then runs that recording through
the rules, ML baselines and knowledge graph on disk and reaches the same root cause and
fix; with the fault's rules taken out (a change under test) the replay says it would no
longer be detected."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import yaml

from kernel.config import REPO_ROOT
from kernel.state import State
from mendloop.cli import main

from .conftest import LoopHarness, empty_graph, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.neo4j]
TARGET = "replay-1"


def replay_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["replay", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_recorded_incident_replays_from_its_samples(
    neo4j_settings, tmp_path, monkeypatch, capsys
):
    empty_graph(neo4j_settings)
    var_dir = tmp_path / "var"
    settings = settings_for(neo4j_settings, var_dir, verify_hold_s=3.0, verify_timeout_s=60.0)
    with LoopHarness(settings, [TARGET]) as loop:
        time.sleep(3)  # healthy samples before the fault: the recording starts from them
        loop.inject(TARGET, "cache_saturation")
        incident = loop.wait_settled(loop.wait_opened(TARGET))
        if incident.state == State.awaiting_approval:
            assert loop.approve(incident.id).status_code == 200
            incident = loop.wait_settled(incident.id)
        assert incident.state == State.resolved, incident.reason
    recording = var_dir / "recordings" / f"{incident.id}.jsonl.gz"
    assert recording.exists()

    for name, value in {
        "MENDLOOP_VAR_DIR": str(var_dir),
        **neo4j_settings.neo4j_environ(),
    }.items():
        monkeypatch.setenv(name, value)
    summary = replay_json(capsys, incident.id)
    (result,) = summary["results"]
    assert result["source"] == "samples" and result["detected"]
    assert result["replayed_fault"] == incident.fault == "cache_saturation"
    assert result["replayed_solution"] == incident.decision.solution_id
    # the recording starts before the opening: the replayed rule fires around it
    assert -10 < result["detected_after_s"] < 10
    assert summary["changed"] == []

    # a rule change under test: the cache rules gone -> the replay reports the miss
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "packs" / "power-marketing" / "rules", rules)
    for path in rules.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and isinstance(doc.get("rules"), list):
            doc["rules"] = [r for r in doc["rules"] if "cache_saturation" not in str(r)]
            path.write_text(yaml.safe_dump(doc))
    changed = replay_json(capsys, incident.id, "--rules", str(rules))
    (after,) = changed["results"]
    assert after["replayed_fault"] != "cache_saturation"
    assert changed["changed"] and changed["changed"][0]["incident_id"] == incident.id
