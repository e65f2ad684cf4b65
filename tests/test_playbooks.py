"""The solution playbooks, run by the real ansible-runner against a real twin.

Check mode must leave the platform untouched (the fault stays active) and report
``changed`` exactly when the real run would change something; the real run must clear
the fault and report ``changed``; the rollback brings the fault back. Every solution's
metadata is checked against the twin's remedy table; the cycle runs on two solutions
(all twin playbooks share one role) against one twin shared by the module.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from kernel.errors import PlaybookError
from knowledge.seed import load_cases
from loop.solutions import check_library, load_library, load_solutions
from rules.catalog import load_catalog
from twin.model import ACTIONS, FAULTS, Twin
from twin.server import TwinRunner

PACK = Path(__file__).resolve().parent.parent / "packs" / "power-marketing"
PLAYBOOKS = PACK / "playbooks"
SITE = "pm-site-1"
SOLUTIONS = yaml.safe_load((PACK / "solutions" / "power-marketing.yaml").read_text())
SOLUTION_IDS = [s["id"] for s in SOLUTIONS]


@pytest.fixture(scope="module")
def shared_twin_runner() -> Iterator[TwinRunner]:
    runner = TwinRunner(Twin(targets=(SITE,), seed=0), tick_s=0.2, port=0)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


@pytest.fixture
def twin_runner(shared_twin_runner: TwinRunner) -> TwinRunner:
    """The module's twin with no fault, no action and no tuning left from the last test."""
    with shared_twin_runner.lock:
        shared_twin_runner.twin.clear(SITE)
    return shared_twin_runner


def role_vars(playbook: str) -> dict[str, object]:
    """The twin_control role's vars in a thin twin playbook (one play, one role)."""
    plays = yaml.safe_load((PLAYBOOKS / playbook).read_text())
    (only,) = plays
    (role,) = only["roles"]
    assert role["role"] == "twin_control", playbook
    return role["vars"]


def play(
    tmp_path: Path, playbook: str, runner: TwinRunner, *, check: bool, target: str = SITE
) -> ansible_runner.Runner:
    """One real ansible-playbook run through ansible-runner, in its own private data dir."""
    private = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
    private.mkdir()
    venv_bin = str(Path(sys.executable).parent)
    return ansible_runner.run(
        private_data_dir=str(private),
        playbook=str(PLAYBOOKS / playbook),
        inventory={
            "all": {
                "hosts": {
                    "localhost": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                    }
                }
            }
        },
        extravars={"twin_url": runner.url, "target": target},
        cmdline="--check" if check else None,
        envvars={
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_NOCOLOR": "1",
        },
        quiet=True,
    )


def changed_tasks(result: ansible_runner.Runner) -> list[str]:
    return [
        e["event_data"]["task"]
        for e in result.events
        if e.get("event") == "runner_on_ok" and e["event_data"]["res"].get("changed")
    ]


def active_faults(runner: TwinRunner) -> list[str]:
    with runner.lock:
        return runner.twin.state(SITE)["faults"]


def test_solutions_metadata_points_at_real_playbooks() -> None:
    assert SOLUTION_IDS[:2] == ["sol-cache-scale-out", "sol-db-io-tune"]
    library, errors = check_library(PACK, known_series=load_catalog(), known_faults=FAULTS)
    assert errors == []
    assert set(load_solutions(PACK)) == set(SOLUTION_IDS)  # the graph's view
    for sid in SOLUTION_IDS:
        spec = library[sid]
        assert spec.check_mode and spec.rollback_playbook
        assert spec.verification.deadline_s == 600 and spec.verification.sqi_min == 80
        assert spec.preconditions and spec.verification.metrics
        (fault,) = spec.faults
        # the playbook applies an action that clears the fault; the rollback reverts it
        repair, back = role_vars(spec.playbook), role_vars(spec.rollback_playbook)
        action = repair["twin_control_action"]
        assert repair["twin_control_op"] == "repair" and back["twin_control_op"] == "rollback"
        assert action in ACTIONS and fault in ACTIONS[action].clears, sid
        assert back["twin_control_action"] == action, sid
        assert set(repair["twin_control_clears"]) == set(ACTIONS[action].clears), sid
    # every failure mode of the twin has a solution
    assert {f for s in SOLUTIONS for f in s["faults"]} == set(FAULTS)
    assert set(load_library(PACK)) == set(library)  # the twin's pack has nothing else


def test_seed_cases_name_solutions_of_their_fault() -> None:
    library = load_solutions(PACK)
    catalog = load_catalog()
    cases = load_cases()
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert case.fault in FAULTS, case.id
        assert library[case.solution_id].fixes == case.fault, case.id
        assert case.outcome == "resolved" and case.time_to_resolve_s, case.id
        for tag in case.symptoms:
            series, direction = tag.split(":")
            assert catalog[series].bad == direction, (case.id, tag)
    for fault in FAULTS:
        assert sum(c.fault == fault for c in cases) >= 2, fault


# Every twin playbook is the same role with other vars (checked above), and the end-to-end
# test runs every solution's repair for real; the full cycle here runs on two of them.
CYCLE = [s for s in SOLUTIONS if s["id"] in ("sol-cache-scale-out", "sol-voltage-dvr")]


@pytest.mark.parametrize("solution", CYCLE, ids=[s["id"] for s in CYCLE])
def test_check_mode_changes_nothing_then_real_run_clears_then_rollback_restores(
    tmp_path: Path, twin_runner: TwinRunner, solution: dict[str, Any]
) -> None:
    fault = solution["faults"][0]
    with twin_runner.lock:
        twin_runner.twin.inject(SITE, fault)

    dry = play(tmp_path, solution["playbook"], twin_runner, check=True)
    assert dry.status == "successful", dry.stdout.read()
    assert len(changed_tasks(dry)) == 1  # check mode says it would change the target
    assert active_faults(twin_runner) == [fault]
    with twin_runner.lock:
        assert twin_runner.twin.state(SITE)["actions"] == []  # not even recorded

    real = play(tmp_path, solution["playbook"], twin_runner, check=False)
    assert real.status == "successful" and real.rc == 0, real.stdout.read()
    assert len(changed_tasks(real)) == 1
    assert active_faults(twin_runner) == []

    again = play(tmp_path, solution["playbook"], twin_runner, check=True)
    assert changed_tasks(again) == []  # nothing left to do: how a crashed run is reconciled

    dry_back = play(tmp_path, solution["rollback_playbook"], twin_runner, check=True)
    assert dry_back.status == "successful"
    assert len(changed_tasks(dry_back)) == 1
    assert active_faults(twin_runner) == []

    back = play(tmp_path, solution["rollback_playbook"], twin_runner, check=False)
    assert back.status == "successful", back.stdout.read()
    assert len(changed_tasks(back)) == 1
    assert active_faults(twin_runner) == [fault]
    dry_back_again = play(tmp_path, solution["rollback_playbook"], twin_runner, check=True)
    assert changed_tasks(dry_back_again) == []  # re-verified: nothing left to revert


def test_wrong_solution_runs_unchanged_and_leaves_the_fault(
    tmp_path: Path, twin_runner: TwinRunner
) -> None:
    with twin_runner.lock:
        twin_runner.twin.inject(SITE, "cache_saturation")
    result = play(tmp_path, "db_io_tune.yml", twin_runner, check=False)
    assert result.status == "successful"
    assert changed_tasks(result) == []  # cleared=false is reported as ok, not changed
    assert active_faults(twin_runner) == ["cache_saturation"]


def test_unknown_target_fails_in_the_read_only_task(
    tmp_path: Path, twin_runner: TwinRunner
) -> None:
    result = play(tmp_path, "cache_scale_out.yml", twin_runner, check=True, target="nope")
    assert result.status == "failed" and result.rc != 0
    failed = [
        e["event_data"]["task"] for e in result.events if e.get("event") == "runner_on_failed"
    ]
    assert failed == ["Assert the twin is reachable and knows the target"]



def test_a_bad_library_is_refused_whole_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "solutions").mkdir()
    shutil.copy(PLAYBOOKS / "cache_scale_out.yml", tmp_path / "playbooks")
    good = "  faults: [cache_saturation]\n  risk: low\n  playbook: cache_scale_out.yml\n"
    (tmp_path / "solutions" / "solutions.yaml").write_text(
        "- id: sol-a\n  title: A\n"
        + good  # lines 1-5
        + "- id: sol-b\n  title: B\n  faults: [cache_saturation]\n  risk: extreme\n"  # 6-9
        "  playbook: cache_scale_out.yml\n"  # 10
        "- id: sol-c\n  title: C\n  faults: [no_such_fault]\n  risk: low\n"  # 11-14
        "  playbook: missing.yml\n  parameters:\n    n: {type: int, default: 99, max: 5}\n"
        "  verification:\n    metrics: [no_such_metric]\n"  # 15-19
        "- id: sol-d\n  title: D\n" + good + "  preconditions: ['cache_hit_ratio >> 3']\n"
        "- id: sol-a\n  title: A again\n" + good  # 26-30
    )
    library, errors = check_library(tmp_path, known_series=load_catalog(), known_faults=FAULTS)
    where = tmp_path / "solutions" / "solutions.yaml"
    assert errors == [
        f"{where}:9: solution #2: risk: Input should be 'low', 'medium' or 'high'",
        f"{where}:15: sol-c: playbook missing.yml not found in {tmp_path / 'playbooks'}",
        f"{where}:17: sol-c: parameter n: 99 is above the maximum 5",
        f"{where}:13: sol-c: unknown fault no_such_fault",
        f"{where}:19: sol-c: unknown metric no_such_metric",
        f"{where}:25: solution #4: preconditions: Value error, condition 'cache_hit_ratio >> 3'"
        ": expected 'series <op> number' (op one of < <= > >= == !=) or 'series healthy' / "
        "'series unhealthy'",
        f"{where}:26: sol-a: solution id sol-a is defined twice",
    ]
    assert set(library) == {"sol-a"}  # what check_library could read; load_library: nothing
    with pytest.raises(PlaybookError, match="solution library refused"):
        load_library(tmp_path)
