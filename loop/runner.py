"""The ansible-runner facade: one playbook run in a private data dir, its outcome as data.

    runner = PlaybookRunner(site.playbook_dirs, settings.var_dir / "runs", inventory=inv_dir)
    detail = runner.run_detailed("cache_scale_out.yml", extra_vars, check=True,
                                 pack="power-marketing", hosts=("localhost",))
    detail.run.status, detail.run.changed_tasks, detail.diff    # RunStatus, not an exception
    await runner.run_async(playbook, extra_vars, check=False, keep_as="abc/sol-x/run")

ansible-runner blocks, so ``run_async`` runs it in a worker thread; cancelling the awaiting
task sets the runner's ``cancel_callback`` and waits for the playbook to stop. Every run
gets a private data dir; its artifacts (stdout, job events; not the extra vars) are kept
under ``<work_dir>/artifacts/<key>`` within a size bound, the rest is removed. Keys,
idempotency and reconciliation live in loop/execute.py.

Trust: this is the one place where extra vars reach Ansible. They are written, every
string tagged ``!unsafe`` (loop/extravars.py), to the private dir's ``env/extravars``,
which ansible-runner passes as ``-e @file``: nothing from outside is rendered by Jinja,
and no value is on the command line. Only a playbook that resolves inside the library
folder runs (loop/solutions.py ``library_playbook``), with its own pack's playbooks dir
as the project dir; anything else, or extra vars that are not plain data, ends as
``RunStatus.error`` with the reason, never an exception. The site's inventory is used
(without one: this machine), and a run is limited (``--limit``, passed as runner data,
not a command line) to the target's inventory hosts, which must be plain host names.
A run holds a lock on its private dir (loop/rundirs.py); dirs whose owner died (kill -9
skips the cleanup) are removed when a runner is built and before each run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from kernel.models import PlaybookRun, RunStatus, utcnow
from loop.extravars import unsafe_yaml
from loop.rundirs import clean_stale_runs, make_private, write_private
from loop.runscope import captured_of, host_limit
from loop.solutions import library_playbook

log = logging.getLogger("mendloop.execute")

_EVENT_LINES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "UNREACHABLE",
}
MAX_EVENTS = 300  # per run, in the ledger
MAX_DIFF_CHARS = 20_000  # per run
STALE_GRACE_S = 300  # a dir without a lock file is stale once older than timeout + this


@dataclass(frozen=True)
class RunDetail:
    """A run's outcome plus what is stored beside it (bounded)."""

    run: PlaybookRun
    events: list[dict[str, Any]] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    artifacts: str | None = None
    captured: dict[str, Any] = field(default_factory=dict)  # the playbook's set_stats


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


# what a playbook inherits from the daemon's environment: locale, home, proxies, SSH agent,
# Ansible's own settings; never the daemon's secrets (MENDLOOP_*, NEO4J_*, tokens, ...)
_INHERITED = re.compile(
    r"(PATH|HOME|USER|LOGNAME|SHELL|TERM|TZ|TMPDIR|LANG|LANGUAGE|LC_[A-Z]+|SSH_AUTH_SOCK"
    r"|(?i:https?_proxy|no_proxy|all_proxy)|ANSIBLE_[A-Z0-9_]+)"
)


def playbook_environment(prepared: Mapping[str, str], daemon: Mapping[str, str]) -> dict[str, str]:
    """The environment ansible-playbook gets: what ansible-runner set or changed for the run,
    and of the daemon's own only what a playbook needs (``_INHERITED``). ansible-runner
    seeds every run with a copy of the whole process environment, secrets included."""
    return {
        key: value
        for key, value in prepared.items()
        if daemon.get(key) != value or _INHERITED.fullmatch(key)
    }


def _not_run(playbook: str, check: bool, started: Any, reason: str) -> RunDetail:
    """A run refused or impossible before Ansible started: an ``error`` with the reason."""
    run = PlaybookRun(
        playbook=playbook,
        check_mode=check,
        status=RunStatus.error,
        rc=None,
        events=(reason,),
        started=started,
        ended=utcnow(),
    )
    return RunDetail(run)


def _drop_environment(command_file: Path) -> None:
    """ansible-runner's ``command`` artifact holds the whole process environment (the
    daemon's secrets among it): keep the command line and cwd only."""
    try:
        recorded = json.loads(command_file.read_text())
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        command_file.unlink(missing_ok=True)
        return
    kept = {k: recorded[k] for k in ("command", "cwd") if k in recorded}
    command_file.write_text(json.dumps(kept))


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
    """A small facade over ansible_runner.run for the playbooks of a site's packs."""

    def __init__(
        self,
        playbooks_dir: Path | Mapping[str, Path],
        work_dir: Path,
        timeout_s: int = 300,
        artifacts_max_bytes: int = 50 * 1024 * 1024,
        inventory: Path | None = None,
    ) -> None:
        # pack -> its playbooks dir; one Path: the same folder for every pack
        if isinstance(playbooks_dir, Path):
            self.playbooks_dir: Path | None = playbooks_dir.resolve()
            self.playbook_dirs: dict[str, Path] = {}
        else:
            self.playbooks_dir = None
            self.playbook_dirs = {k: v.resolve() for k, v in playbooks_dir.items()}
        self.inventory = inventory
        self.work_dir = work_dir
        self.timeout_s = timeout_s
        self.artifacts_max_bytes = artifacts_max_bytes
        self.clean_stale()

    def clean_stale(self) -> list[str]:
        """Private run dirs of dead runs (see ``clean_stale_runs``), removed now."""
        return clean_stale_runs(self.work_dir, self.timeout_s + STALE_GRACE_S)

    @property
    def artifacts_dir(self) -> Path:
        return self.work_dir / "artifacts"

    def hosts(self) -> tuple[str, ...]:
        """The hosts a run without a limit would touch, for approval plans."""
        if self.inventory is not None:
            return ()  # a site's run is always limited to its target's hosts (the plan's)
        return ("localhost",)

    def project_dir(self, pack: str) -> Path:
        """The playbooks dir of ``pack``; ValueError for a pack the site does not have."""
        if self.playbooks_dir is not None:
            return self.playbooks_dir
        if pack not in self.playbook_dirs:
            raise ValueError(f"pack {pack!r} is not part of this site")
        return self.playbook_dirs[pack]

    def _inventory(self) -> dict[str, Any] | str:
        if self.inventory is not None:
            return str(self.inventory.resolve())
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
            # a pack's playbooks find the modules of the packs it builds on (the postgresql
            # pack restarts through linux-host's mendloop_process): every pack's library/
            "ANSIBLE_LIBRARY": os.pathsep.join(self.module_dirs()),
        }

    def module_dirs(self) -> list[str]:
        """The ``library/`` folders of this runner's packs (a playbook's own comes first
        anyway: Ansible looks beside the playbook before ANSIBLE_LIBRARY)."""
        dirs = [self.playbooks_dir] if self.playbooks_dir else list(self.playbook_dirs.values())
        return [str(d / "library") for d in dirs if (d / "library").is_dir()]

    def run(
        self,
        playbook: str,
        extra_vars: dict[str, Any],
        check: bool,
        cancel: threading.Event | None = None,
        pack: str = "",
        hosts: tuple[str, ...] = (),
    ) -> PlaybookRun:
        """Blocking run; never raises for a playbook that fails — that is a status."""
        return self.run_detailed(playbook, extra_vars, check, cancel, pack=pack, hosts=hosts).run

    def run_detailed(
        self,
        playbook: str,
        extra_vars: dict[str, Any],
        check: bool,
        cancel: threading.Event | None = None,
        keep_as: str | None = None,
        pack: str = "",
        hosts: tuple[str, ...] = (),
    ) -> RunDetail:
        """Blocking run with its bounded events and diff; artifacts kept as ``keep_as``;
        limited to ``hosts`` (required with a site inventory)."""
        started = utcnow()
        lines: list[str] = []
        failed: list[str] = []
        changed_tasks: list[str] = []
        events: list[dict[str, Any]] = []
        diff: list[str] = []
        diff_chars = 0
        changed = 0
        captured: dict[str, Any] = {}

        def on_event(event: dict[str, Any]) -> bool:
            nonlocal changed, diff_chars, captured
            kind = event.get("event", "")
            if kind == "playbook_on_stats":  # set_stats data: for the rollback
                captured = captured_of((event.get("event_data") or {}).get("artifact_data"))
            if kind.startswith(("runner_", "playbook_on_")) and len(events) < MAX_EVENTS:
                events.append(_brief(event))
            if kind in _EVENT_LINES:
                data = event.get("event_data", {})
                task = data.get("task", "?")
                res = data.get("res", {}) or {}
                if kind == "runner_on_ok" and res.get("changed"):
                    changed += 1
                    changed_tasks.append(f"{data.get('host', '?')}: {task}")
                if kind in ("runner_on_failed", "runner_on_unreachable"):
                    failed.append(f"{task}: {res.get('msg', '')}".strip())
                text = _diff_text(res) if isinstance(res, dict) else ""
                if text and diff_chars < MAX_DIFF_CHARS:
                    diff.append(f"# {task}\n{text}"[: MAX_DIFF_CHARS - diff_chars])
                    diff_chars += len(diff[-1])
                lines.append(f"{_EVENT_LINES[kind]}: {task}")
            return True

        try:  # only the library's playbooks: inside its folder, no '..', no symlink out
            project = self.project_dir(pack)
            path = library_playbook(project, playbook)
            variables = unsafe_yaml(extra_vars)
            limit = host_limit(hosts, required=self.inventory is not None)
        except (TypeError, ValueError) as exc:
            log.warning("run refused: %s", exc)
            return _not_run(playbook, check, started, f"refused: {exc}")
        try:
            self.clean_stale()
            private, lock = make_private(self.work_dir)  # locked while the run lasts
        except OSError as exc:  # a full disk or a read-only var/: a status, not a crash
            return _not_run(playbook, check, started, f"no private run dir: {exc}")
        kept: str | None = None
        try:
            write_private(private / "env" / "extravars", variables)  # runner: -e @it
            result = ansible_runner.interface.init_runner(
                private_data_dir=str(private),
                project_dir=str(project),
                playbook=str(path.relative_to(project)),
                inventory=self._inventory(),
                limit=limit,
                envvars=self._envvars(),
                cmdline="--check --diff" if check else None,
                ident=uuid.uuid4().hex[:8],
                quiet=True,
                timeout=self.timeout_s,
                event_handler=on_event,
                cancel_callback=(lambda: cancel.is_set()) if cancel else None,
                suppress_env_files=True,
            )
            result.config.env = playbook_environment(result.config.env, os.environ)
            result.run()
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
            try:
                kept = self._keep_artifacts(private, keep_as)
            except OSError as exc:  # the run's outcome stands without its artifacts
                lines.append(f"artifacts not kept: {exc}")
            shutil.rmtree(private, ignore_errors=True)
            os.close(lock)
        run = PlaybookRun(
            playbook=playbook,
            check_mode=check,
            status=status,
            rc=rc,
            changed=changed,
            changed_tasks=tuple(changed_tasks),
            failed_tasks=tuple(failed),
            events=tuple(lines),
            started=started,
            ended=utcnow(),
        )
        return RunDetail(run, events, diff, kept, captured)

    def _keep_artifacts(self, private: Path, keep_as: str | None) -> str | None:
        """Move the run's artifacts (stdout, job events, the command line; not the
        env/extravars, nor the process environment runner records with the command)."""
        idents = [p for p in (private / "artifacts").glob("*") if p.is_dir()]
        if keep_as is None or len(idents) != 1:
            return None
        source = idents[0]  # artifacts/<ident>/{stdout, status, rc, command, job_events/}
        _drop_environment(source / "command")
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
        pack: str = "",
        hosts: tuple[str, ...] = (),
    ) -> RunDetail:
        cancel = threading.Event()
        task = asyncio.ensure_future(
            asyncio.to_thread(
                self.run_detailed, playbook, extra_vars, check, cancel, keep_as, pack, hosts
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancel.set()
            await asyncio.wait([task])
            raise
