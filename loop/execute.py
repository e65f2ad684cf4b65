"""Execute: run a decision's playbook with ansible-runner, dry run first.

    runner = PlaybookRunner(settings.playbooks_dir, settings.var_dir / "runs")
    execution = await execute(decision, runner)       # check mode, then for real
    execution.status                                 # RunStatus: an outcome, not an exception

ansible-runner blocks, so each run happens in a worker thread; cancelling the awaiting
task sets the runner's ``cancel_callback`` and waits for the playbook to stop. Every run
gets a private data dir that is removed afterwards; what it did is kept as the
PlaybookRun's event lines.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import ansible_runner

from loop.models import Decision, Execution, PlaybookRun, RunStatus, utcnow

_EVENT_LINES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "UNREACHABLE",
}


class PlaybookRunner:
    """A small facade over ansible_runner.run for playbooks of one library folder."""

    def __init__(self, playbooks_dir: Path, work_dir: Path, timeout_s: int = 300) -> None:
        self.playbooks_dir = playbooks_dir.resolve()
        self.work_dir = work_dir
        self.timeout_s = timeout_s

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
        started = utcnow()
        lines: list[str] = []
        failed: list[str] = []
        changed = 0

        def on_event(event: dict[str, Any]) -> bool:
            nonlocal changed
            kind = event.get("event", "")
            if kind in _EVENT_LINES:
                data = event.get("event_data", {})
                task = data.get("task", "?")
                res = data.get("res", {}) or {}
                if kind == "runner_on_ok" and res.get("changed"):
                    changed += 1
                if kind in ("runner_on_failed", "runner_on_unreachable"):
                    failed.append(f"{task}: {res.get('msg', '')}".strip())
                lines.append(f"{_EVENT_LINES[kind]}: {task}")
            return True

        if not (self.playbooks_dir / playbook).is_file():
            return PlaybookRun(
                playbook=playbook,
                check_mode=check,
                status=RunStatus.error,
                rc=None,
                events=(f"playbook {playbook} not found in {self.playbooks_dir}",),
                started=started,
                ended=utcnow(),
            )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        private = tempfile.mkdtemp(prefix="run-", dir=self.work_dir)
        try:
            result = ansible_runner.run(
                private_data_dir=private,
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
            shutil.rmtree(private, ignore_errors=True)
        return PlaybookRun(
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

    async def run_async(
        self, playbook: str, extra_vars: dict[str, Any], check: bool
    ) -> PlaybookRun:
        cancel = threading.Event()
        task = asyncio.ensure_future(
            asyncio.to_thread(self.run, playbook, extra_vars, check, cancel)
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancel.set()
            await asyncio.wait([task])
            raise


async def execute(decision: Decision, runner: PlaybookRunner) -> Execution:
    """Check mode first; only a clean dry run earns the real one."""
    started = utcnow()
    execution_id = uuid.uuid4().hex[:12]
    check = await runner.run_async(decision.playbook, decision.extra_vars, check=True)
    real: PlaybookRun | None = None
    if check.status == RunStatus.successful:
        real = await runner.run_async(decision.playbook, decision.extra_vars, check=False)
    final = real or check
    return Execution(
        id=execution_id,
        incident_id=decision.incident_id,
        playbook=decision.playbook,
        check_result=check,
        run=real,
        status=final.status,
        started=started,
        ended=utcnow(),
    )


async def rollback(decision: Decision, runner: PlaybookRunner) -> PlaybookRun | None:
    if not decision.rollback_playbook:
        return None
    return await runner.run_async(decision.rollback_playbook, decision.extra_vars, check=False)
