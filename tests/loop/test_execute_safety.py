"""The execution trust boundary on the real ansible-runner and ansible-core: nothing that
came from outside is ever evaluated by Jinja nor reaches a command line, only playbooks of
the library run, and the private run dirs a killed process leaves behind are cleaned."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kernel.models import RunStatus
from loop.execute import PlaybookRunner, execute
from loop.ledger import Ledger
from loop.rundirs import RUN_LOCK, clean_stale_runs
from loop.solutions import check_file, library_playbook
from loop.store import IncidentStore
from twin.model import Twin
from twin.server import TwinRunner

from ..conftest import library_plan

PLAYBOOKS = Path(__file__).resolve().parents[2] / "packs" / "power-marketing" / "playbooks"

ECHO = """\
- name: Write every named extra var back as JSON, with its type
  hosts: all
  gather_facts: false
  tasks:
    - name: One value
      ansible.builtin.copy:
        content: >-
          {{ {'value': lookup('ansible.builtin.vars', item),
              'type': lookup('ansible.builtin.vars', item) | type_debug} | to_json }}
        dest: "{{ out_dir }}/{{ item }}.json"
      loop: "{{ names }}"
    - name: The target, the way the twin playbooks use it
      ansible.builtin.copy:
        content: "{{ target }}"
        dest: "{{ out_dir }}/target.txt"
"""
GATE = """\
- name: Start, then wait for the test's gate
  hosts: all
  gather_facts: false
  tasks:
    - name: Say it started
      ansible.builtin.file:
        path: "{{ started }}"
        state: touch
    - name: Wait for the gate
      ansible.builtin.wait_for:
        path: "{{ gate }}"
        timeout: 600
"""
TOUCH = """\
- name: Must never run
  hosts: all
  gather_facts: false
  tasks:
    - name: Leave a mark
      ansible.builtin.file:
        path: "{{ mark }}"
        state: touch
"""
# what YAML would type as something else (numbers, booleans, null, dates, merge keys),
# YAML and shell specials, unicode: each must arrive as the very same string
SPECIALS = (
    "123",
    "yes",
    "null",
    "~",
    "=",
    "<<",
    "2024-01-01",
    "0x1F",
    ".inf",
    "",
    "  lead and trail  ",
    "a'b\"c\nd\te\\f",
    "- a\n- b",
    "key: value",
    "!unsafe x",
    "&a *a",
    "ünï — 漢字 🙂 \u2028\x85",
    "$(id) `id`; | & > /dev/null",
)


def hostile(mark: Path) -> tuple[str, ...]:
    """Templates that would leave ``mark`` (or render something else) if evaluated."""
    return (
        f"{{{{ lookup('pipe', 'touch {mark}-0') }}}}",
        f"{{% set x = lookup('pipe', 'touch {mark}-1') %}}done",
        f"{{{{ query('ansible.builtin.pipe', 'touch {mark}-2') }}}}",
        "{{ 7*7 }}",
        "{{ lookup('env', 'HOME') }}",
        "{# hidden #}{{ '%s' | format(1) }}",
        "{% raw %}{{ 1 }}{% endraw %}",
    )


@pytest.fixture
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "echo.yml").write_text(ECHO)
    (lib / "gate.yml").write_text(GATE)
    return lib


def marks(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("pwned-*"))


@pytest.mark.parametrize("check", [True, False], ids=["dry-run", "run"])
def test_hostile_extra_vars_are_never_evaluated_and_arrive_literally(
    tmp_path: Path, library: Path, check: bool
) -> None:
    mark = tmp_path / f"pwned-{uuid.uuid4().hex[:8]}"
    values = (*hostile(mark), *SPECIALS)
    names = [f"v{i}" for i in range(len(values))]
    out = tmp_path / "out"
    out.mkdir()
    extra_vars = {
        "target": hostile(mark)[0],
        "out_dir": str(out),
        "names": names,
        **dict(zip(names, values, strict=True)),
    }
    runner = PlaybookRunner(library, tmp_path / "runs", timeout_s=120)
    run = runner.run("echo.yml", extra_vars, check=check)
    assert run.status == RunStatus.successful, run.events
    assert marks(tmp_path) == []  # no lookup ran, in the dry run or the real one
    if check:  # check mode writes nothing; it templated the same values
        assert list(out.iterdir()) == []
        return
    assert (out / "target.txt").read_text() == extra_vars["target"]
    for name, value in zip(names, values, strict=True):
        got = json.loads((out / f"{name}.json").read_text())
        assert got["value"] == value, name
        assert got["type"] in ("str", "AnsibleUnsafeText"), (name, got)


def test_the_twin_playbook_acts_on_the_literal_target(tmp_path: Path) -> None:
    """A target named like a template is the twin target of that very name: on a runner
    that rendered it, ``lit-{{7*7}}`` would have become ``lit-49`` (another target)."""
    literal, rendered = "lit-{{7*7}}", "lit-49"
    with TwinRunner(Twin(targets=(literal, rendered), seed=0), tick_s=1.0, port=0) as twin:
        with twin.locked() as model:
            model.inject(literal, "cache_saturation")
            model.inject(rendered, "cache_saturation")
        plan = library_plan("lit", literal, {"twin_url": twin.url})
        assert plan.extra_vars["target"] == literal
        store = IncidentStore(f"sqlite:///{tmp_path / 'm.db'}")
        runner = PlaybookRunner(PLAYBOOKS, tmp_path / "runs", timeout_s=120)
        try:
            execution = asyncio.run(execute(plan, runner, Ledger(store.engine)))
        finally:
            store.close()
        with twin.locked() as model:
            acted = {
                t: [a["action"] for a in model.state(t)["actions"]] for t in (literal, rendered)
            }
            left = {t: model.state(t)["faults"] for t in (literal, rendered)}
    assert execution.status == RunStatus.successful, execution
    assert acted == {literal: ["scale_out_cache"], rendered: []}
    assert left == {literal: [], rendered: ["cache_saturation"]}


IN_PROCESS_MARK = Path(tempfile.gettempdir()) / f"pwned-{uuid.uuid4().hex}"


ANSIBLE_CHILD = """
import json, sys, tempfile
from pathlib import Path
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19 templates every string of a playbook
    trust_as_template = str
from loop.extravars import unsafe_yaml
for line in sys.stdin:
    text = json.loads(line)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "extravars")
        path.write_text(unsafe_yaml({"v": text}), encoding="utf-8")
        loader = DataLoader()
        data = loader.load_from_file(str(path), cache="none", trusted_as_template=True)
    rendered = Templar(loader=loader, variables=data).template(trust_as_template("{{ v }}"))
    value = data["v"]
    print(json.dumps([isinstance(value, str), str(value), str(rendered)]), flush=True)
"""


@pytest.fixture(scope="module")
def ansible_child() -> Iterator[subprocess.Popen[str]]:
    """ansible-core's own loader and templar in a child process of this test: importing
    ansible patches builtins of the process it runs in (``sys.intern``), which breaks
    torch for every later test of the same session."""
    child = subprocess.Popen(
        [sys.executable, "-c", ANSIBLE_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    yield child
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=30)


def _loads_as_ansible(child: subprocess.Popen[str], text: str) -> tuple[bool, str, str]:
    """What ansible-playbook makes of ``-e @file`` (ansible.utils.vars.load_extra_vars:
    the file loaded trusted, so only the ``!unsafe`` tag protects a value) and what
    ``{{ v }}`` in a playbook renders from it: (whether the value is a string, the value,
    the render)."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(text) + "\n")
    child.stdin.flush()
    answer = child.stdout.readline()
    assert answer, f"the ansible child died (exit {child.poll()})"
    is_text, value, rendered = json.loads(answer)
    return is_text, value, rendered


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=60) | st.sampled_from(SPECIALS + hostile(IN_PROCESS_MARK)))
@example(text="123")
@example(text="true")
def test_every_string_reaches_ansible_as_the_same_inert_string(
    ansible_child: subprocess.Popen[str], text: str
) -> None:
    """ansible-core's own loader and templar (in a child process) over any text."""
    is_text, value, rendered = _loads_as_ansible(ansible_child, text)
    assert is_text and value == text
    assert rendered == text
    assert not list(IN_PROCESS_MARK.parent.glob(f"{IN_PROCESS_MARK.name}*"))


def test_extra_vars_that_are_not_plain_data_are_refused_not_raised(
    tmp_path: Path, library: Path
) -> None:
    runner = PlaybookRunner(library, tmp_path / "runs", timeout_s=120)
    for extra_vars in (
        {"bad name": "x"},
        {"{{ 7*7 }}": "x"},
        {"v": "\ud800"},  # a lone surrogate: not text
        {"v": object()},
        {"v": float("nan")},
    ):
        run = runner.run("echo.yml", extra_vars, check=True)
        assert run.status == RunStatus.error and run.events[0].startswith("refused: ")
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_extra_vars_are_not_on_the_command_line(tmp_path: Path, library: Path) -> None:
    """What ``ps`` shows of a running playbook, read from /proc while it runs, and the
    command the run records: the extra vars are a file, their values nowhere."""
    secret = f"s3cret-{uuid.uuid4().hex}"
    work = tmp_path / "runs"
    started, gate = tmp_path / "started", tmp_path / "gate"
    runner = PlaybookRunner(library, work, timeout_s=300)
    extra_vars = {"started": str(started), "gate": str(gate), "secret": secret}
    detail: list = []
    thread = threading.Thread(
        target=lambda: detail.append(runner.run_detailed("gate.yml", extra_vars, False, None, "k"))
    )
    thread.start()
    try:
        wait_for(started.exists, thread)
        everything = _command_lines()  # every process, as ps sees it
    finally:
        gate.touch()
        thread.join(300)
    ours = [c for c in everything if str(work) in c]
    assert any("ansible-playbook" in c and "/env/extravars" in c for c in ours), ours
    assert not any(secret in c for c in everything)
    [result] = detail
    assert result.run.status == RunStatus.successful, result.run.events
    recorded = json.loads(Path(result.artifacts, "command").read_text())
    assert set(recorded) == {"command", "cwd"}  # not the process environment
    assert secret not in json.dumps(recorded) and "-e" in recorded["command"]
    assert recorded["command"][recorded["command"].index("-e") + 1].endswith("/env/extravars")
    assert list(work.glob("run-*")) == []  # the private dir (and its extravars) is gone


ENV = """\
- name: Write what the playbook's environment holds
  hosts: all
  gather_facts: false
  tasks:
    - name: Each asked-for variable, empty when unset
      ansible.builtin.set_fact:
        seen: >-
          {{ seen | default({})
             | combine({item: lookup('ansible.builtin.env', item, default='')}) }}
      loop: "{{ names }}"
    - name: Write them
      ansible.builtin.copy:
        content: "{{ seen | to_json }}"
        dest: "{{ out_dir }}/env.json"
"""


def test_a_playbook_never_sees_the_daemons_secrets(
    tmp_path: Path, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ansible-runner seeds a run with the whole process environment; the daemon's own
    settings and secrets must not reach the playbook, what it needs (PATH, HOME, locale,
    proxies, Ansible's settings) must."""
    secret = f"s3cret-{uuid.uuid4().hex}"
    for name in ("MENDLOOP_API_TOKEN", "NEO4J_PASSWORD", "MENDLOOP_CHAT_BOT_TOKEN", "AWS_SECRET"):
        monkeypatch.setenv(name, secret)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("ANSIBLE_FORCE_COLOR", "0")
    (library / "env.yml").write_text(ENV)
    names = [
        "MENDLOOP_API_TOKEN",
        "NEO4J_PASSWORD",
        "MENDLOOP_CHAT_BOT_TOKEN",
        "AWS_SECRET",
        "PATH",
        "HOME",
        "https_proxy",
        "ANSIBLE_FORCE_COLOR",
    ]
    runner = PlaybookRunner(library, tmp_path / "runs", timeout_s=300)
    run = runner.run("env.yml", {"out_dir": str(tmp_path), "names": names}, check=False)
    assert run.status == RunStatus.successful, run.events
    seen = json.loads((tmp_path / "env.json").read_text())
    assert {k: v for k, v in seen.items() if secret in v} == {}
    assert seen["PATH"] and seen["HOME"]
    assert seen["https_proxy"] == "http://proxy.example:3128"
    assert seen["ANSIBLE_FORCE_COLOR"] == "0"


def _command_lines() -> list[str]:
    lines = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                lines.append(proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:  # gone meanwhile
                continue
    return lines


def wait_for(condition, thread: threading.Thread | None = None, limit_s: float = 120) -> None:
    """Poll until ``condition()`` (a run started) or fail; not a timed assertion."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if thread is not None and not thread.is_alive():
            raise AssertionError("the run ended before the condition held")
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.1)


# -- only playbooks of the library --------------------------------------------------------


@pytest.fixture
def escape(tmp_path: Path, library: Path) -> tuple[Path, Path, dict[str, str]]:
    """A playbook outside the library and every way of naming it from inside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.yml").write_text(TOUCH)
    (library / "link.yml").symlink_to(outside / "evil.yml")
    (library / "sub").symlink_to(outside, target_is_directory=True)
    names = {
        "dotdot": "../outside/evil.yml",
        "dotdot-inside": "sub/../../outside/evil.yml",
        "absolute": str(outside / "evil.yml"),
        "symlink": "link.yml",
        "symlinked-dir": "sub/evil.yml",
        "home": "~/evil.yml",
    }
    return outside, tmp_path / "pwned-mark", names


def test_the_runner_refuses_every_playbook_outside_the_library(
    tmp_path: Path, library: Path, escape: tuple[Path, Path, dict[str, str]]
) -> None:
    _, mark, names = escape
    runner = PlaybookRunner(library, tmp_path / "runs", timeout_s=120)
    for why, name in names.items():
        run = runner.run(name, {"mark": str(mark)}, check=False)
        assert run.status == RunStatus.error, (why, run.events)
        assert run.events[0].startswith("refused: playbook"), (why, run.events)
    assert not mark.exists() and not (tmp_path / "runs").exists()
    (library / "inside.yml").symlink_to(library / "echo.yml")  # a link within: fine
    assert library_playbook(library, "inside.yml") == (library / "echo.yml").resolve()


def test_the_library_refuses_playbook_names_that_leave_its_folder(
    tmp_path: Path, library: Path, escape: tuple[Path, Path, dict[str, str]]
) -> None:
    _, _, names = escape
    entries = "".join(
        f"- id: sol-{why}\n"
        f"  title: t\n"
        f"  faults: [cache_saturation]\n"
        f"  risk: low\n"
        f"  playbook: echo.yml\n"
        f"  rollback_playbook: {json.dumps(name)}\n"
        for why, name in names.items()
    )
    path = library / "solutions.yaml"
    path.write_text(entries)
    specs, errors = check_file(path, library)
    assert specs == {}
    assert len(errors) == len(names)
    for n, why in enumerate(names):
        line = 6 * n + 6  # the rollback_playbook line of entry n
        assert errors[n].startswith(f"{path}:{line}: sol-{why}: playbook "), errors[n]


# -- private run dirs of dead runs --------------------------------------------------------


def test_private_run_dirs_nobody_holds_are_removed_at_start(tmp_path: Path, library: Path) -> None:
    work = tmp_path / "runs"
    for name in ("run-dead", "run-live", "run-young", "run-old", "artifacts"):
        (work / name / "env").mkdir(parents=True)
        (work / name / "env" / "extravars").write_text("target: x\n")
    (work / "run-dead" / RUN_LOCK).touch()  # its owner died: the kernel dropped its lock
    (work / "run-live" / RUN_LOCK).touch()
    old = time.time() - 86_400
    os.utime(work / "run-old", (old, old))  # no lock file (made before it was taken)
    (work / "run-link").symlink_to(library, target_is_directory=True)
    held = os.open(work / "run-live" / RUN_LOCK, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # a run in progress
    try:
        PlaybookRunner(library, work, timeout_s=60)
        left = sorted(p.name for p in work.iterdir())
    finally:
        os.close(held)
    assert left == ["artifacts", "run-link", "run-live", "run-young"]
    assert (library / "echo.yml").exists()  # a link is never followed
    assert clean_stale_runs(work, older_than_s=86_400 * 2) == ["run-live"]  # released now


KILLED = """\
import sys
from pathlib import Path
from loop.runner import PlaybookRunner
lib, work, started, gate, secret = sys.argv[1:]
PlaybookRunner(Path(lib), Path(work), timeout_s=600).run(
    "gate.yml", {"started": started, "gate": gate, "secret": secret}, check=False
)
"""


def test_a_run_killed_with_sigkill_leaves_a_dir_the_next_runner_removes(
    tmp_path: Path, library: Path
) -> None:
    work, started, gate = tmp_path / "runs", tmp_path / "started", tmp_path / "gate"
    secret = f"s3cret-{uuid.uuid4().hex}"
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    env = {**os.environ, "PYTHONPATH": str(PLAYBOOKS.parents[2])}
    args = [sys.executable, str(script), str(library), str(work), str(started), str(gate), secret]
    proc = subprocess.Popen(args, env=env)
    try:
        wait_for(lambda: started.exists() or proc.poll() is not None)
        assert proc.poll() is None, "the run ended before it was killed"
        [private] = work.glob("run-*")
        assert secret in (private / "env" / "extravars").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert private.exists()  # kill -9 skips every cleanup
    finally:
        gate.touch()  # an orphaned ansible-playbook, if any, finishes now
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    wait_for(lambda: not any(str(work) in c for c in _command_lines()))
    PlaybookRunner(library, work, timeout_s=600)  # the next start
    assert list(work.glob("run-*")) == []
