"""Execute: run a decision's playbook with ansible-runner, dry run first, at most once.

    runner = PlaybookRunner(settings.playbooks_dir, settings.var_dir / "runs")
    execution = await execute(decision, runner, ledger, check_mode=True)
    execution.status                      # RunStatus: an outcome, not an exception
    execution, why = await reconcile(decision, runner, ledger, check_mode=True)  # after a crash

ansible-runner blocks, so each run happens in a worker thread; cancelling the awaiting
task sets the runner's ``cancel_callback`` and waits for the playbook to stop. Every run
gets a private data dir; its artifacts (stdout, job events) are kept under
``<work_dir>/artifacts/<key>`` within a size bound, the rest is removed; the runner's
events (bounded) and the check run's diff are stored with the run in the ledger.

Idempotency: every run has a key (``<incident>/<solution>/<phase>``) that is committed to
SQL *before* ansible starts; a key is never run twice. A real run whose row is still
``started`` when the daemon comes back was interrupted: ``reconcile`` asks the playbook's
check mode whether anything is left to do; nothing -> the run took effect; something ->
it did not, and it runs once more under a new key (the playbooks are idempotent).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from loop.ledger import INTERRUPTED, STARTED, Ledger
from loop.models import Decision, Execution, PlaybookRun, RunStatus, utcnow

_EVENT_LINES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "UNREACHABLE",
}
MAX_EVENTS = 300  # per run, in the ledger
MAX_DIFF_CHARS = 20_000  # per run
MAX_ATTEMPTS = 3  # real runs of one decision, counting reconciled re-runs


@dataclass(frozen=True)
class RunDetail:
    """A run's outcome plus what is stored beside it (bounded)."""

    run: PlaybookRun
    events: list[dict[str, Any]] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    artifacts: str | None = None


def _brief(event: dict[str, Any]) -> dict[str, Any]:
    """One runner event, cut to what a timeline shows."""
    data = event.get("event_data", {}) or {}
    res = data.get("res", {}) or {}
    brief: dict[str, Any] = {
        "counter": event.get("counter"),
        "event": event.get("event"),
        "created": event.get("created"),
        "task": data.get("task"),
        "host": data.get("host"),
    }
    if isinstance(res, dict):
        if "changed" in res:
            brief["changed"] = bool(res.get("changed"))
        if res.get("msg"):
            brief["msg"] = str(res["msg"])[:300]
    return {k: v for k, v in brief.items() if v is not None}


def _diff_text(res: dict[str, Any]) -> str:
    diffs = res.get("diff")
    if not diffs:
        return ""
    parts = []
    for d in diffs if isinstance(diffs, list) else [diffs]:
        if isinstance(d, dict):
            before, after = d.get("before_header", "before"), d.get("after_header", "after")
            parts.append(f"--- {before}\n+++ {after}\n{d.get('prepared', '')}".rstrip())
        else:
            parts.append(str(d))
    return "\n".join(parts)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prune_artifacts(root: Path, max_bytes: int) -> list[str]:
    """Oldest kept artifact dirs go first until the folder fits ``max_bytes``."""
    if not root.is_dir():
        return []
    kept = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    sizes = {p: dir_size(p) for p in kept}
    total = sum(sizes.values())
    removed = []
    for path in kept:
        if total <= max_bytes:
            break
        shutil.rmtree(path, ignore_errors=True)
        total -= sizes[path]
        removed.append(path.name)
    return removed


class PlaybookRunner:
    """A small facade over ansible_runner.run for playbooks of one library folder."""

    def __init__(
        self,
        playbooks_dir: Path,
        work_dir: Path,
        timeout_s: int = 300,
        artifacts_max_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.playbooks_dir = playbooks_dir.resolve()
        self.work_dir = work_dir
        self.timeout_s = timeout_s
        self.artifacts_max_bytes = artifacts_max_bytes

    @property
    def artifacts_dir(self) -> Path:
        return self.work_dir / "artifacts"

    def _inventory(self) -> dict[str, Any]:
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        return {"all": {"hosts": {"localhost": local}}}

    def _envvars(self) -> dict[str, str]:
        # ansible-runner spawns `ansible-playbook`: take the one beside our interpreter
        bin_dir = str(Path(sys.executable).parent)
        return {
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
        }

    def run(
        self,
        playbook: str,
        extra_vars: dict[str, Any],
        check: bool,
        cancel: threading.Event | None = None,
    ) -> PlaybookRun:
        """Blocking run; never raises for a playbook that fails — that is a status."""
        return self.run_detailed(playbook, extra_vars, check, cancel).run

    def run_detailed(
        self,
        playbook: str,
        extra_vars: dict[str, Any],
        check: bool,
        cancel: threading.Event | None = None,
        keep_as: str | None = None,
    ) -> RunDetail:
        """Blocking run with its bounded events and diff; artifacts kept as ``keep_as``."""
        started = utcnow()
        lines: list[str] = []
        failed: list[str] = []
        events: list[dict[str, Any]] = []
        diff: list[str] = []
        diff_chars = 0
        changed = 0

        def on_event(event: dict[str, Any]) -> bool:
            nonlocal changed, diff_chars
            kind = event.get("event", "")
            if kind.startswith(("runner_", "playbook_on_")) and len(events) < MAX_EVENTS:
                events.append(_brief(event))
            if kind in _EVENT_LINES:
                data = event.get("event_data", {})
                task = data.get("task", "?")
                res = data.get("res", {}) or {}
                if kind == "runner_on_ok" and res.get("changed"):
                    changed += 1
                if kind in ("runner_on_failed", "runner_on_unreachable"):
                    failed.append(f"{task}: {res.get('msg', '')}".strip())
                text = _diff_text(res) if isinstance(res, dict) else ""
                if text and diff_chars < MAX_DIFF_CHARS:
                    diff.append(f"# {task}\n{text}"[: MAX_DIFF_CHARS - diff_chars])
                    diff_chars += len(diff[-1])
                lines.append(f"{_EVENT_LINES[kind]}: {task}")
            return True

        if not (self.playbooks_dir / playbook).is_file():
            message = f"playbook {playbook} not found in {self.playbooks_dir}"
            return RunDetail(
                PlaybookRun(
                    playbook=playbook,
                    check_mode=check,
                    status=RunStatus.error,
                    rc=None,
                    events=(message,),
                    started=started,
                    ended=utcnow(),
                )
            )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_dir))
        kept: str | None = None
        try:
            result = ansible_runner.run(
                private_data_dir=str(private),
                project_dir=str(self.playbooks_dir),
                playbook=playbook,
                inventory=self._inventory(),
                extravars=dict(extra_vars),
                envvars=self._envvars(),
                cmdline="--check --diff" if check else None,
                ident=uuid.uuid4().hex[:8],
                quiet=True,
                timeout=self.timeout_s,
                event_handler=on_event,
                cancel_callback=(lambda: cancel.is_set()) if cancel else None,
                suppress_env_files=True,
            )
            status = (
                RunStatus(result.status)
                if result.status in RunStatus.__members__
                else RunStatus.error
            )
            rc = result.rc
        except Exception as exc:  # ansible_runner raises plain Exception subclasses
            status, rc = RunStatus.error, None
            lines.append(f"ansible-runner error: {type(exc).__name__}: {exc}")
        finally:
            kept = self._keep_artifacts(private, keep_as)
            shutil.rmtree(private, ignore_errors=True)
        run = PlaybookRun(
            playbook=playbook,
            check_mode=check,
            status=status,
            rc=rc,
            changed=changed,
            failed_tasks=tuple(failed),
            events=tuple(lines),
            started=started,
            ended=utcnow(),
        )
        return RunDetail(run, events, diff, kept)

    def _keep_artifacts(self, private: Path, keep_as: str | None) -> str | None:
        """Move the run's artifacts (stdout, job events; not the env/extravars) aside."""
        idents = [p for p in (private / "artifacts").glob("*") if p.is_dir()]
        if keep_as is None or len(idents) != 1:
            return None
        source = idents[0]  # artifacts/<ident>/{stdout, status, rc, job_events/}
        dest = self.artifacts_dir / re.sub(r"[^A-Za-z0-9_.-]+", "_", keep_as)
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(dest))
        prune_artifacts(self.artifacts_dir, self.artifacts_max_bytes)
        return str(dest) if dest.exists() else None

    async def run_async(
        self,
        playbook: str,
        extra_vars: dict[str, Any],
        check: bool,
        keep_as: str | None = None,
    ) -> RunDetail:
        cancel = threading.Event()
        task = asyncio.ensure_future(
            asyncio.to_thread(self.run_detailed, playbook, extra_vars, check, cancel, keep_as)
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancel.set()
            await asyncio.wait([task])
            raise


def run_key(decision: Decision, phase: str) -> str:
    return f"{decision.incident_id}/{decision.solution_id}/{phase}"


async def run_once(
    runner: PlaybookRunner,
    ledger: Ledger,
    decision: Decision,
    phase: str,
    playbook: str,
    check: bool,
) -> PlaybookRun | None:
    """One run under its idempotency key, committed before it starts; None when the key
    was used already (it must not run again)."""
    key = run_key(decision, phase)
    if not ledger.begin_run(key, decision.incident_id, phase, playbook):
        return None
    detail = await runner.run_async(playbook, decision.extra_vars, check, keep_as=key)
    ledger.finish_run(key, detail.run, detail.events, detail.diff, detail.artifacts)
    return detail.run


def _execution(
    decision: Decision, check: PlaybookRun | None, real: PlaybookRun | None, started: Any
) -> Execution:
    final = real or check
    assert final is not None
    return Execution(
        id=uuid.uuid4().hex[:12],
        incident_id=decision.incident_id,
        playbook=decision.playbook,
        check_result=check,
        run=real,
        status=final.status,
        started=started,
        ended=utcnow(),
    )


def _already_used(decision: Decision, phase: str) -> Execution:
    now = utcnow()
    run = PlaybookRun(
        playbook=decision.playbook,
        check_mode=phase == "check",
        status=RunStatus.error,
        rc=None,
        events=(f"idempotency key {run_key(decision, phase)} was used already; not run again",),
        started=now,
        ended=now,
    )
    return _execution(decision, run if phase == "check" else None, None, now)


async def execute(
    decision: Decision, runner: PlaybookRunner, ledger: Ledger, check_mode: bool = True
) -> Execution:
    """Check mode first (when the playbook supports it); only a clean dry run earns the
    real one. Each run happens at most once for the decision."""
    started = utcnow()
    check: PlaybookRun | None = None
    if check_mode:
        check = await run_once(runner, ledger, decision, "check", decision.playbook, check=True)
        if check is None:
            return _already_used(decision, "check")
        if check.status != RunStatus.successful:
            return _execution(decision, check, None, started)
    real = await run_once(runner, ledger, decision, "run", decision.playbook, check=False)
    if real is None:
        return _already_used(decision, "run")
    return _execution(decision, check, real, started)


async def reconcile(
    decision: Decision, runner: PlaybookRunner, ledger: Ledger, check_mode: bool = True
) -> tuple[Execution | None, str]:
    """The daemon stopped while the incident was executing: find out what happened to the
    real run instead of repeating it blindly. Returns the execution to go on with, or
    None and why a person is needed."""
    started = utcnow()
    attempts = ["run"] + [f"run-{n}" for n in range(2, MAX_ATTEMPTS + 1)]
    records = [(phase, ledger.run(run_key(decision, phase))) for phase in attempts]
    used = [(phase, r) for phase, r in records if r is not None]
    if not used:  # stopped before the real run began: nothing ran, so run it now
        execution = await execute(decision, runner, ledger, check_mode)
        return execution, "the real run had not started; ran it now"
    phase, record = used[-1]
    assert record is not None
    if record.status not in (STARTED, INTERRUPTED):  # it ended; only the transition was lost
        run = PlaybookRun(
            playbook=record.playbook,
            check_mode=False,
            status=RunStatus(record.status),
            rc=record.rc,
            changed=record.changed,
            events=(f"run {record.key} had ended {record.status} before the restart",),
            started=record.started_at,
            ended=record.ended_at or utcnow(),
        )
        return _execution(decision, None, run, started), f"run {record.key} had ended"
    if not check_mode:
        return None, (
            f"run {record.key} was interrupted and {decision.playbook} has no check mode to "
            "tell whether it took effect; not re-run — check the target by hand"
        )
    probe_phase = f"reconcile-{phase}"
    probe = await run_once(runner, ledger, decision, probe_phase, decision.playbook, check=True)
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
        return _execution(decision, probe, run, started), f"run {record.key} {note}; not re-run"
    position = attempts.index(phase)
    if position + 1 >= len(attempts):
        return None, f"run {record.key} was interrupted {MAX_ATTEMPTS} times; left to a person"
    ledger.mark_interrupted(record.key, "interrupted before it took effect (check mode)")
    next_phase = attempts[position + 1]
    real = await run_once(runner, ledger, decision, next_phase, decision.playbook, check=False)
    if real is None:
        return None, f"run key {next_phase} was used already"
    return _execution(decision, probe, real, started), (
        f"run {record.key} was interrupted before it took effect (check mode: "
        f"{probe.changed} change(s) pending); ran once more as {next_phase}"
    )


async def rollback(
    decision: Decision, runner: PlaybookRunner, ledger: Ledger, check_mode: bool = True
) -> tuple[PlaybookRun | None, str]:
    """The rollback playbook (once), then its check mode to re-verify nothing is left to
    revert. Returns the rollback run (None: there is none) and what the re-check said."""
    if not decision.rollback_playbook:
        return None, "no rollback playbook"
    run = await run_once(
        runner, ledger, decision, "rollback", decision.rollback_playbook, check=False
    )
    if run is None:
        return None, "the rollback had run already"
    if run.status != RunStatus.successful or not check_mode:
        return run, "not re-checked"
    again = await run_once(
        runner, ledger, decision, "rollback-check", decision.rollback_playbook, check=True
    )
    if again is None or again.status != RunStatus.successful:
        return run, f"re-check ended {again.status if again else 'already used'}"
    if again.changed:
        return run, f"re-check: {again.changed} change(s) still to revert"
    return run, "re-checked: nothing left to revert"
