"""The solution playbooks, run by the real ansible-runner against a real twin.

Check mode must leave the platform untouched (the fault stays active); the real run
must clear the fault and report ``changed``; the rollback brings the fault back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import ansible_runner
import pytest
import yaml

from twin.model import ACTIONS, FAULTS, Twin
from twin.server import TwinRunner

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
SITE = "pm-site-1"
SOLUTIONS = yaml.safe_load((PLAYBOOKS / "solutions.yaml").read_text())
SOLUTION_IDS = [s["id"] for s in SOLUTIONS]


@pytest.fixture
def twin_runner() -> Iterator[TwinRunner]:
    runner = TwinRunner(Twin(targets=(SITE,), seed=0), tick_s=0.2, port=0)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


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
    assert SOLUTION_IDS == ["sol-cache-scale-out", "sol-db-io-tune"]
    for sol in SOLUTIONS:
        assert set(sol) == {
            "id",
            "title",
            "playbook",
            "rollback_playbook",
            "risk",
            "fixes",
            "description",
        }
        assert (PLAYBOOKS / sol["playbook"]).is_file()
        assert (PLAYBOOKS / sol["rollback_playbook"]).is_file()
        assert sol["risk"] in ("low", "medium")
        assert sol["fixes"] in FAULTS
    # every solution fixes a fault some twin action clears (the library covers a subset
    # of the twin's faults until the remedies of issue 6 get playbooks of their own)
    assert {s["fixes"] for s in SOLUTIONS} <= {f for a in ACTIONS.values() for f in a.clears}


@pytest.mark.parametrize("solution", SOLUTIONS, ids=SOLUTION_IDS)
def test_check_mode_changes_nothing_then_real_run_clears_then_rollback_restores(
    tmp_path: Path, twin_runner: TwinRunner, solution: dict[str, str]
) -> None:
    fault = solution["fixes"]
    with twin_runner.lock:
        twin_runner.twin.inject(SITE, fault)

    dry = play(tmp_path, solution["playbook"], twin_runner, check=True)
    assert dry.status == "successful", dry.stdout.read()
    assert changed_tasks(dry) == []
    assert active_faults(twin_runner) == [fault]
    with twin_runner.lock:
        assert twin_runner.twin.state(SITE)["actions"] == []  # not even recorded

    real = play(tmp_path, solution["playbook"], twin_runner, check=False)
    assert real.status == "successful" and real.rc == 0, real.stdout.read()
    assert len(changed_tasks(real)) == 1
    assert active_faults(twin_runner) == []

    dry_back = play(tmp_path, solution["rollback_playbook"], twin_runner, check=True)
    assert dry_back.status == "successful"
    assert active_faults(twin_runner) == []

    back = play(tmp_path, solution["rollback_playbook"], twin_runner, check=False)
    assert back.status == "successful", back.stdout.read()
    assert len(changed_tasks(back)) == 1
    assert active_faults(twin_runner) == [fault]


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
