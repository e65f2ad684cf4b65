"""Execution safety on real components (ansible-runner, the twin's HTTP control surface,
SQLite): each run keyed and recorded before it starts and never run twice, events and
artifacts kept within bounds, an interrupted run reconciled through check mode."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.models import RunStatus
from kernel.plan import RemediationPlan
from loop.execute import (
    PlaybookRunner,
    dry_run,
    execute,
    prune_artifacts,
    reconcile,
    rollback,
    run_key,
)
from loop.ledger import INTERRUPTED, Ledger
from loop.store import IncidentStore
from twin.model import Twin
from twin.server import TwinRunner

from ..conftest import library_plan

PLAYBOOKS = Path(__file__).resolve().parents[2] / "packs" / "power-marketing" / "playbooks"
SITE = "pm-site-1"


@pytest.fixture(scope="module")
def twin() -> Iterator[TwinRunner]:
    with TwinRunner(Twin(targets=(SITE,), seed=0), tick_s=1.0, port=0) as runner:
        yield runner


@pytest.fixture
def site(twin: TwinRunner) -> TwinRunner:
    with twin.locked() as model:
        model.clear(SITE)
        model.inject(SITE, "cache_saturation")
    return twin


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    store = IncidentStore(f"sqlite:///{tmp_path / 'm.db'}")
    yield Ledger(store.engine)
    store.close()


@pytest.fixture
def runner(tmp_path: Path) -> PlaybookRunner:
    return PlaybookRunner(PLAYBOOKS, tmp_path / "runs", timeout_s=120)


def decision(twin: TwinRunner, incident: str = "inc1", target: str = SITE) -> RemediationPlan:
    """The plan of sol-cache-scale-out (cache_scale_out.yml and its rollback)."""
    plan = library_plan(incident, target, {"twin_url": twin.url})
    assert plan.playbook == "cache_scale_out.yml" and plan.check_mode
    assert plan.rollback_playbook == "cache_scale_out_rollback.yml"
    return plan


def actions(twin: TwinRunner) -> list[str]:
    with twin.locked() as model:
        return [a["action"] for a in model.state(SITE)["actions"]]


def faults(twin: TwinRunner) -> list[str]:
    with twin.locked() as model:
        return model.state(SITE)["faults"]


def test_runs_are_recorded_with_events_and_artifacts_and_never_repeated(
    site: TwinRunner, ledger: Ledger, runner: PlaybookRunner
) -> None:
    d = decision(site)
    execution = asyncio.run(execute(d, runner, ledger))
    assert execution.status == RunStatus.successful
    assert execution.check_result.changed == 1 and execution.run.changed == 1
    runs = ledger.runs("inc1")
    assert [(r.phase, r.status) for r in runs] == [("check", "successful"), ("run", "successful")]
    for record in runs:
        assert record.ended_at >= record.started_at
        tasks = [e.get("task") for e in record.events if e["event"] == "runner_on_ok"]
        assert "Read the target's state from the twin (read-only, runs in check mode too)" in tasks
        assert Path(record.artifacts, "stdout").is_file()  # kept, bounded, per run
        assert not Path(record.artifacts, "env").exists()  # the extra vars are not kept
    assert faults(site) == [] and actions(site) == ["scale_out_cache"]

    again = asyncio.run(execute(d, runner, ledger))  # the same decision, once more
    assert again.status == RunStatus.error  # a dry run may repeat (check-2), the run not
    assert "was used already; not run again" in again.run.events[0]
    assert actions(site) == ["scale_out_cache"]
    assert [r.phase for r in ledger.runs("inc1")] == ["check", "run", "check-2"]


def test_a_failed_dry_run_never_starts_the_real_one(
    site: TwinRunner, ledger: Ledger, runner: PlaybookRunner
) -> None:
    execution = asyncio.run(execute(decision(site, target="nowhere"), runner, ledger))
    assert execution.status == RunStatus.failed and execution.run is None
    assert [r.phase for r in ledger.runs("inc1")] == ["check"]
    assert "Assert the twin is reachable" in execution.check_result.failed_tasks[0]
    assert actions(site) == []


def test_an_interrupted_run_that_took_effect_is_not_run_again(
    site: TwinRunner, ledger: Ledger, runner: PlaybookRunner
) -> None:
    d = decision(site)
    ledger.begin_run(run_key(d, "run"), "inc1", "run", d.playbook)  # ... then the crash
    with site.locked() as model:
        model.repair(SITE, "scale_out_cache")  # what the interrupted run had done
    execution, why = asyncio.run(reconcile(d, runner, ledger))
    assert execution is not None and execution.status == RunStatus.successful, why
    assert "took effect; not re-run" in why
    assert actions(site) == ["scale_out_cache"]  # once
    runs = {r.phase: r for r in ledger.runs("inc1")}
    assert runs["run"].status == INTERRUPTED and runs["reconcile-run"].changed == 0


def test_an_interrupted_run_that_did_not_take_effect_runs_once_more(
    site: TwinRunner, ledger: Ledger, runner: PlaybookRunner
) -> None:
    d = decision(site)
    ledger.begin_run(run_key(d, "run"), "inc1", "run", d.playbook)
    execution, why = asyncio.run(reconcile(d, runner, ledger))
    assert execution is not None and execution.status == RunStatus.successful, why
    assert "ran once more as run-2" in why
    assert faults(site) == [] and actions(site) == ["scale_out_cache"]
    assert [r.phase for r in ledger.runs("inc1")] == ["run", "reconcile-run", "run-2"]
    # and a second restart finds run-2 ended: nothing runs again
    execution, why = asyncio.run(reconcile(d, runner, ledger))
    assert execution.status == RunStatus.successful and "had ended" in why
    assert actions(site) == ["scale_out_cache"]


def test_rollback_is_rechecked(site: TwinRunner, ledger: Ledger, runner: PlaybookRunner) -> None:
    d = decision(site)
    asyncio.run(execute(d, runner, ledger))
    run, recheck, held = asyncio.run(rollback(d, runner, ledger, why="verification failed"))
    assert run.status == RunStatus.successful and recheck == "re-checked: nothing left to revert"
    assert held and faults(site) == ["cache_saturation"]
    assert ledger.run(run_key(d, "rollback")).note == "verification failed"
    # asked again (the transition after it was lost): its result is re-checked, not re-run
    again = asyncio.run(rollback(d, runner, ledger))
    assert again.held and "had ended successful" in again.run.events[0]
    assert actions_rolled_back(site) == 1


def actions_rolled_back(twin: TwinRunner) -> int:
    with twin.locked() as model:
        return sum(1 for a in model.state(SITE)["actions"] if a["rolled_back_at"] is not None)


def test_an_interrupted_rollback_that_took_effect_is_not_run_again(
    site: TwinRunner, ledger: Ledger, runner: PlaybookRunner
) -> None:
    """The ledger a kill -9 during the rollback leaves: its row ``started``, the twin
    already rolled back. Check mode shows nothing left to revert: it is not run again."""
    d = decision(site)
    asyncio.run(execute(d, runner, ledger))
    ledger.begin_run(run_key(d, "rollback"), "inc1", "rollback", d.rollback_playbook, "why")
    with site.locked() as model:
        model.rollback(SITE, "scale_out_cache")  # what the interrupted rollback had done
    outcome = asyncio.run(rollback(d, runner, ledger))
    assert outcome.held, outcome.recheck
    assert "took effect; not re-run" in outcome.recheck
    assert actions_rolled_back(site) == 1
    runs = {r.phase: r for r in ledger.runs("inc1")}
    assert runs["rollback"].status == INTERRUPTED and runs["reconcile-rollback"].changed == 0


def test_an_interrupted_rollback_that_did_not_take_effect_runs_once_more(
    site: TwinRunner, ledger: Ledger, runner: PlaybookRunner
) -> None:
    d = decision(site)
    asyncio.run(execute(d, runner, ledger))
    ledger.begin_run(run_key(d, "rollback"), "inc1", "rollback", d.rollback_playbook, "why")
    outcome = asyncio.run(rollback(d, runner, ledger))
    assert outcome.held, outcome.recheck
    assert "ran once more as rollback-2" in outcome.recheck
    assert actions_rolled_back(site) == 1 and faults(site) == ["cache_saturation"]
    phases = [r.phase for r in ledger.runs("inc1")]
    assert phases == [
        "check",
        "run",
        "rollback",
        "reconcile-rollback",
        "rollback-2",
        "rollback-check",
    ]
    assert ledger.run(run_key(d, "rollback-2")).note == "why"


def test_a_dry_run_repeats_under_fresh_keys_and_names_what_would_change(
    site: TwinRunner, ledger: Ledger, runner: PlaybookRunner
) -> None:
    d = decision(site)
    first = asyncio.run(dry_run(d, runner, ledger, "plan"))
    second = asyncio.run(dry_run(d, runner, ledger, "plan"))
    assert first.run.changed == second.run.changed == 1
    assert first.run.changed_tasks == ("localhost: Say what would be done (check mode only)",)
    assert [r.phase for r in ledger.runs("inc1")] == ["plan", "plan-2"]
    assert actions(site) == [] and faults(site) == ["cache_saturation"]


def test_artifacts_are_pruned_oldest_first(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    for i, size in enumerate((400, 300, 200)):
        (root / f"run{i}").mkdir(parents=True)
        (root / f"run{i}" / "stdout").write_bytes(b"x" * size)
    assert prune_artifacts(root, 600) == ["run0"]
    assert sorted(p.name for p in root.iterdir()) == ["run1", "run2"]
