"""Execute: run a remediation plan's playbook with ansible-runner, dry run first, at most
once.

    runner = PlaybookRunner(site.playbook_dirs, settings.var_dir / "runs", inventory=inv)
    execution = await execute(plan, runner, ledger)    # plan: kernel.plan.RemediationPlan
    execution.status                      # RunStatus: an outcome, not an exception
    execution, why = await reconcile(plan, runner, ledger)          # after a crash
    detail = await dry_run(plan, runner, ledger, "plan")   # a keyed check run (approval plan)
    outcome = await rollback(plan, runner, ledger, why="verification failed")

Everything comes from the plan: the playbook and its rollback, the extra vars, and whether
the playbook has a check mode (without one: no dry run, and an interrupted run cannot be
probed, so it is left to a person).

The ansible-runner facade (a worker thread per run, cancellation, private data dirs,
bounded artifacts) is loop/runner.py; here the runs are keyed: the runner's events
(bounded) and the check run's diff are stored with each run in the ledger.

Idempotency: every run has a key (``<incident>/<solution>/<phase>``) that is committed to
SQL *before* ansible starts; a key is never run twice. A real run whose row is still
``started`` when the daemon comes back was interrupted: ``reconcile`` asks the playbook's
check mode whether anything is left to do; nothing -> the run took effect; something ->
it did not, and it runs once more under a new key (the playbooks are idempotent). The
rollback is reconciled the same way: a ``rollback`` row left ``started`` is probed with
the rollback playbook's check mode (nothing left to revert: it took effect; something
left: it runs once more as ``rollback-2``). Dry runs (check mode changes nothing) take the
next free key of their phase (``plan``, ``plan-2``, ...), so they may be repeated.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any, NamedTuple

from kernel.models import Execution, PlaybookRun, RunStatus, utcnow
from kernel.plan import RemediationPlan
from loop.db.schema import ExecutionRunRecord
from loop.ledger import INTERRUPTED, STARTED, Ledger
from loop.runner import PlaybookRunner, RunDetail, prune_artifacts

__all__ = [  # the runner is re-exported: callers import it from here
    "MAX_ATTEMPTS",
    "PlaybookRunner",
    "RollbackOutcome",
    "RunDetail",
    "dry_run",
    "execute",
    "free_phase",
    "prune_artifacts",
    "reconcile",
    "rollback",
    "run_key",
    "run_once",
]

MAX_ATTEMPTS = 3  # real runs of one plan (and of its rollback), counting re-runs


def run_key(plan: RemediationPlan, phase: str) -> str:
    return f"{plan.incident_id}/{plan.solution_id}/{phase}"


async def run_once(
    runner: PlaybookRunner,
    ledger: Ledger,
    plan: RemediationPlan,
    phase: str,
    playbook: str,
    check: bool,
    note: str = "",
    extra_vars: dict[str, Any] | None = None,
) -> PlaybookRun | None:
    """One run under its idempotency key, committed before it starts; None when the key
    was used already (it must not run again). ``extra_vars``: the plan's by default."""
    detail = await _run_keyed(runner, ledger, plan, phase, playbook, check, note, extra_vars)
    return detail.run if detail else None


async def _run_keyed(
    runner: PlaybookRunner,
    ledger: Ledger,
    plan: RemediationPlan,
    phase: str,
    playbook: str,
    check: bool,
    note: str = "",
    extra_vars: dict[str, Any] | None = None,
) -> RunDetail | None:
    key = run_key(plan, phase)
    if not ledger.begin_run(key, plan.incident_id, phase, playbook, note):
        return None
    variables = plan.extra_vars if extra_vars is None else extra_vars
    detail = await runner.run_async(
        playbook, variables, check, keep_as=key, pack=plan.pack, hosts=plan.hosts
    )
    ledger.finish_run(
        key, detail.run, detail.events, detail.diff, detail.artifacts, note, detail.captured
    )
    return detail


def free_phase(ledger: Ledger, plan: RemediationPlan, phase: str) -> str:
    """The first unused key of a repeatable phase: ``phase``, ``phase-2``, ``phase-3``..."""
    n = 1
    while ledger.run(run_key(plan, phase if n == 1 else f"{phase}-{n}")) is not None:
        n += 1
    return phase if n == 1 else f"{phase}-{n}"


async def dry_run(
    plan: RemediationPlan, runner: PlaybookRunner, ledger: Ledger, phase: str = "plan"
) -> RunDetail:
    """Check mode of the plan's playbook under the next free key of ``phase`` (a dry
    run changes nothing, so it may be repeated): what it would change, with its diff."""
    key_phase = free_phase(ledger, plan, phase)
    detail = await _run_keyed(runner, ledger, plan, key_phase, plan.playbook, check=True)
    assert detail is not None  # the phase was free a moment ago; one task per incident
    return detail


def _execution(
    plan: RemediationPlan, check: PlaybookRun | None, real: PlaybookRun | None, started: Any
) -> Execution:
    final = real or check
    assert final is not None
    return Execution(
        id=uuid.uuid4().hex[:12],
        incident_id=plan.incident_id,
        playbook=plan.playbook,
        check_result=check,
        run=real,
        status=final.status,
        started=started,
        ended=utcnow(),
    )


def _already_used(plan: RemediationPlan, phase: str) -> Execution:
    now = utcnow()
    run = PlaybookRun(
        playbook=plan.playbook,
        check_mode=phase == "check",
        status=RunStatus.error,
        rc=None,
        events=(f"idempotency key {run_key(plan, phase)} was used already; not run again",),
        started=now,
        ended=now,
    )
    check = phase == "check"
    return _execution(plan, run if check else None, None if check else run, now)


async def execute(
    plan: RemediationPlan,
    runner: PlaybookRunner,
    ledger: Ledger,
    checked: PlaybookRun | None = None,
) -> Execution:
    """Check mode first (when the playbook supports it); only a clean dry run earns the
    real one. Each real run happens at most once for the plan. ``checked``: a dry run
    made just now (the approval plan's, recomputed before the run) stands for the check."""
    started = utcnow()
    check: PlaybookRun | None = checked
    if plan.check_mode:
        if check is None:
            phase = free_phase(ledger, plan, "check")
            check = await run_once(runner, ledger, plan, phase, plan.playbook, check=True)
        if check is None:
            return _already_used(plan, "check")
        if check.status != RunStatus.successful:
            return _execution(plan, check, None, started)
    real = await run_once(runner, ledger, plan, "run", plan.playbook, check=False)
    if real is None:
        return _already_used(plan, "run")
    return _execution(plan, check, real, started)


async def reconcile(
    plan: RemediationPlan, runner: PlaybookRunner, ledger: Ledger
) -> tuple[Execution | None, str]:
    """The daemon stopped while the incident was executing: find out what happened to the
    real run instead of repeating it blindly. Returns the execution to go on with, or
    None and why a person is needed."""
    started = utcnow()
    attempts = ["run"] + [f"run-{n}" for n in range(2, MAX_ATTEMPTS + 1)]
    records = [(phase, ledger.run(run_key(plan, phase))) for phase in attempts]
    used = [(phase, r) for phase, r in records if r is not None]
    if not used:  # stopped before the real run began: nothing ran, so run it now
        execution = await execute(plan, runner, ledger)
        return execution, "the real run had not started; ran it now"
    phase, record = used[-1]
    assert record is not None
    if record.status not in (STARTED, INTERRUPTED):  # it ended; only the transition was lost
        run = _ended_before_restart(record, "run")
        return _execution(plan, None, run, started), f"run {record.key} had ended"
    if not plan.check_mode:
        return None, (
            f"run {record.key} was interrupted and {plan.playbook} has no check mode to "
            "tell whether it took effect; not re-run — check the target by hand"
        )
    probe_phase = f"reconcile-{phase}"
    probe = await run_once(runner, ledger, plan, probe_phase, plan.playbook, check=True)
    if probe is None or probe.status != RunStatus.successful:
        status = probe.status if probe else "already used"
        return None, f"run {record.key} was interrupted and its check mode ended {status}"
    if probe.changed == 0:
        note = "interrupted; check mode shows nothing left to do: the run took effect"
        ledger.mark_interrupted(record.key, note)
        run = PlaybookRun(
            playbook=record.playbook,
            check_mode=False,
            status=RunStatus.successful,
            rc=record.rc,
            events=(f"run {record.key} {note}",),
            started=record.started_at,
            ended=utcnow(),
        )
        return _execution(plan, probe, run, started), f"run {record.key} {note}; not re-run"
    position = attempts.index(phase)
    if position + 1 >= len(attempts):
        return None, f"run {record.key} was interrupted {MAX_ATTEMPTS} times; left to a person"
    ledger.mark_interrupted(record.key, "interrupted before it took effect (check mode)")
    next_phase = attempts[position + 1]
    real = await run_once(runner, ledger, plan, next_phase, plan.playbook, check=False)
    if real is None:
        return None, f"run key {next_phase} was used already"
    return _execution(plan, probe, real, started), (
        f"run {record.key} was interrupted before it took effect (check mode: "
        f"{probe.changed} change(s) pending); ran once more as {next_phase}"
    )


class RollbackOutcome(NamedTuple):
    """The rollback run (None: none ran) and what its re-check said; ``held`` when it ran
    (or had run) successfully and its check mode shows nothing left to revert."""

    run: PlaybookRun | None
    recheck: str
    held: bool = False


def rollback_vars(plan: RemediationPlan, ledger: Ledger) -> dict[str, Any]:
    """The rollback's extra vars: the plan's, plus what the fix published with set_stats
    as ``captured_<name>`` (the old value it changed, for instance); like every extra var
    they reach Ansible tagged unsafe (loop/extravars.py)."""
    captured = ledger.captured(run_key(plan, "run"))
    return {**plan.extra_vars, **{f"captured_{k}": v for k, v in captured.items()}}


async def rollback(
    plan: RemediationPlan,
    runner: PlaybookRunner,
    ledger: Ledger,
    why: str = "",
) -> RollbackOutcome:
    """The rollback playbook (once), then its check mode to re-verify nothing is left to
    revert. A rollback found begun already (the daemon stopped during it) is reconciled,
    never repeated blindly: ended -> its result is re-checked; still ``started`` -> its
    check mode tells whether it took effect (nothing left to revert) or not (run once
    more as ``rollback-2``, at most MAX_ATTEMPTS runs). ``why`` is stored with the run."""
    if not plan.rollback_playbook:
        return RollbackOutcome(None, "no rollback playbook")
    playbook = plan.rollback_playbook
    variables = rollback_vars(plan, ledger)
    attempts = ["rollback"] + [f"rollback-{n}" for n in range(2, MAX_ATTEMPTS + 1)]
    used = [(p, r) for p in attempts if (r := ledger.run(run_key(plan, p))) is not None]
    if not used:
        run = await run_once(
            runner, ledger, plan, "rollback", playbook, check=False, note=why, extra_vars=variables
        )
        if run is None:
            return RollbackOutcome(None, "the rollback had run already")
        return await _recheck(plan, runner, ledger, run)
    phase, record = used[-1]
    if record.status not in (STARTED, INTERRUPTED):  # it ended; only what followed was lost
        run = _ended_before_restart(record, "rollback")
        return await _recheck(plan, runner, ledger, run)
    if not plan.check_mode:
        return RollbackOutcome(
            None,
            f"rollback {record.key} was interrupted and {playbook} has no check mode to tell "
            "whether it took effect; not re-run, check the target by hand",
        )
    probe_phase = free_phase(ledger, plan, f"reconcile-{phase}")
    probe = await run_once(
        runner, ledger, plan, probe_phase, playbook, check=True, extra_vars=variables
    )
    if probe is None or probe.status != RunStatus.successful:
        status = probe.status if probe else "already used"
        return RollbackOutcome(
            None, f"rollback {record.key} was interrupted and its check mode ended {status}"
        )
    if probe.changed == 0:
        note = "interrupted; check mode shows nothing left to revert: it took effect"
        ledger.mark_interrupted(record.key, note)
        run = PlaybookRun(
            playbook=playbook,
            check_mode=False,
            status=RunStatus.successful,
            rc=record.rc,
            events=(f"rollback {record.key} {note}",),
            started=_aware_dt(record.started_at),
            ended=utcnow(),
        )
        return RollbackOutcome(run, f"rollback {record.key} {note}; not re-run", held=True)
    position = attempts.index(phase)
    if position + 1 >= len(attempts):
        return RollbackOutcome(
            None, f"rollback {record.key} was interrupted {MAX_ATTEMPTS} times; left to a person"
        )
    ledger.mark_interrupted(record.key, "interrupted before it took effect (check mode)")
    next_phase = attempts[position + 1]
    again = await run_once(
        runner, ledger, plan, next_phase, playbook, False, note=record.note, extra_vars=variables
    )
    if again is None:
        return RollbackOutcome(None, f"rollback key {next_phase} was used already")
    outcome = await _recheck(plan, runner, ledger, again)
    return outcome._replace(
        recheck=f"rollback {record.key} was interrupted before it took effect ({probe.changed} "
        f"change(s) pending); ran once more as {next_phase}; {outcome.recheck}"
    )


def _aware_dt(value: Any) -> Any:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ended_before_restart(record: ExecutionRunRecord, what: str) -> PlaybookRun:
    """A keyed run that had ended before the daemon stopped (only what followed was lost),
    as the PlaybookRun the incident goes on with."""
    return PlaybookRun(
        playbook=record.playbook,
        check_mode=False,
        status=RunStatus(record.status),
        rc=record.rc,
        changed=record.changed,
        events=(f"{what} {record.key} had ended {record.status} before the restart",),
        started=_aware_dt(record.started_at),
        ended=_aware_dt(record.ended_at or utcnow()),
    )


async def _recheck(
    plan: RemediationPlan,
    runner: PlaybookRunner,
    ledger: Ledger,
    run: PlaybookRun,
) -> RollbackOutcome:
    """The rollback's check mode after it ran: nothing left to revert means it held."""
    if run.status != RunStatus.successful:
        return RollbackOutcome(run, "not re-checked")
    if not plan.check_mode:
        return RollbackOutcome(run, "not re-checked: no check mode", held=True)
    assert plan.rollback_playbook is not None
    phase = free_phase(ledger, plan, "rollback-check")
    variables = rollback_vars(plan, ledger)
    again = await run_once(
        runner, ledger, plan, phase, plan.rollback_playbook, check=True, extra_vars=variables
    )
    if again is None or again.status != RunStatus.successful:
        return RollbackOutcome(run, f"re-check ended {again.status if again else 'already used'}")
    if again.changed:
        return RollbackOutcome(run, f"re-check: {again.changed} change(s) still to revert")
    return RollbackOutcome(run, "re-checked: nothing left to revert", held=True)
