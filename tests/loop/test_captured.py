"""Captured values for rollback (docs/SITES.md): a fix playbook publishes the value it
changes with Ansible's set_stats; the ledger keeps it with the run; the rollback gets it
as ``captured_<name>``, tagged unsafe like every extra var (a value that looks like a
template arrives literally). Real ansible-runner playbooks, a real SQLite ledger, a site
inventory with the run limited to the target's host."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from kernel.models import RunStatus
from kernel.plan import RemediationPlan, VerificationPlan
from loop.execute import execute, rollback, rollback_vars, run_key
from loop.ledger import Ledger
from loop.runner import PlaybookRunner
from loop.runscope import captured_of, host_limit
from loop.store import IncidentStore

FIX = """\
- name: Change a setting, remembering the old value
  hosts: all
  gather_facts: false
  tasks:
    - name: Read the old value
      ansible.builtin.slurp:
        src: "{{ setting }}"
      register: old
    - name: Publish it for the rollback
      ansible.builtin.set_stats:
        data:
          old_value: "{{ old.content | b64decode }}"
    - name: Write the new value
      ansible.builtin.copy:
        dest: "{{ setting }}"
        content: "new"
        mode: "0600"
"""
ROLLBACK = """\
- name: Put the old value back
  hosts: all
  gather_facts: false
  tasks:
    - name: Restore what the fix captured
      ansible.builtin.copy:
        dest: "{{ setting }}"
        content: "{{ captured_old_value }}"
        mode: "0600"
"""


def test_the_rollback_restores_the_value_the_fix_captured(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    (pack / "playbooks").mkdir(parents=True)
    (pack / "playbooks" / "fix.yml").write_text(FIX)
    (pack / "playbooks" / "undo.yml").write_text(ROLLBACK)
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text(
        "all:\n  hosts:\n    box-1:\n      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        "    box-2:\n      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
    )
    mark = tmp_path / f"pwned-{uuid.uuid4().hex[:8]}"
    old = f"maxmemory 1gb {{{{ lookup('pipe', 'touch {mark}') }}}}"
    setting = tmp_path / "setting.conf"
    setting.write_text(old)
    store = IncidentStore(f"sqlite:///{tmp_path / 'm.db'}")
    ledger = Ledger(store.engine)
    runner = PlaybookRunner(
        {"pack": pack / "playbooks"}, tmp_path / "runs", 120, inventory=inventory
    )
    plan = RemediationPlan(
        incident_id="inc-1",
        solution_id="sol-x",
        title="x",
        target="box-1",
        playbook="fix.yml",
        rollback_playbook="undo.yml",
        pack="pack",
        hosts=("box-1",),
        check_mode=False,
        risk="low",
        extra_vars={"target": "box-1", "setting": str(setting)},
        verification=VerificationPlan(series=(), hold_s=1, deadline_s=10),
    )
    try:
        execution = asyncio.run(execute(plan, runner, ledger))
        assert execution.status == RunStatus.successful
        assert setting.read_text() == "new"
        assert ledger.captured(run_key(plan, "run")) == {"old_value": old}
        assert rollback_vars(plan, ledger)["captured_old_value"] == old
        run = ledger.run(run_key(plan, "run"))
        assert run is not None and all("box-2" not in str(e) for e in run.events)  # --limit
        outcome = asyncio.run(rollback(plan, runner, ledger, why="verification failed"))
        assert outcome.run is not None and outcome.run.status == RunStatus.successful
        assert setting.read_text() == old  # literally, never rendered
        assert not mark.exists()
    finally:
        store.close()


def test_what_set_stats_publishes_is_kept_only_when_it_is_small_plain_data() -> None:
    assert captured_of({"old": "1gb", "n": 3}) == {"old": "1gb", "n": 3}
    assert captured_of({"not a name": 1}) == {}
    assert captured_of({"big": "x" * 20_000}) == {}
    assert captured_of(None) == {} and captured_of(["a"]) == {}


def test_a_run_is_limited_to_plain_host_names() -> None:
    assert host_limit(("box-1", "db.example.org"), required=True) == "box-1,db.example.org"
    assert host_limit((), required=False) is None
    for bad in (("all,!box-1",), ("~.*",), ("*",), ("a:b",), ("!x",)):
        try:
            host_limit(bad, required=True)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")
    try:
        host_limit((), required=True)
    except ValueError as exc:
        assert "no inventory host" in str(exc)
    else:
        raise AssertionError("a site run without hosts was accepted")
