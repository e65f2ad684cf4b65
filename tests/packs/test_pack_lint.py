"""Every bundled pack's playbooks are ansible-lint clean, linted as the runner runs them:
every pack's modules on ANSIBLE_LIBRARY (loop/runner.py). One ansible-lint run over all the
packs: its start-up (loading ansible-core and its rules) costs as much as the linting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.config import PACKS_DIR

PLAYBOOK_DIRS = sorted(p for p in PACKS_DIR.glob("*/playbooks") if p.is_dir())


def test_the_pack_playbooks_are_ansible_lint_clean() -> None:
    lint = shutil.which("ansible-lint", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("ansible-lint is not installed (pip install -e .[dev])")
    assert {p.parent.name for p in PLAYBOOK_DIRS} >= {"linux-host", "redis", "nginx", "postgresql"}
    modules = os.pathsep.join(str(p / "library") for p in PLAYBOOK_DIRS if (p / "library").is_dir())
    result = subprocess.run(
        [
            lint,
            "--offline",
            "-q",
            "--nocolor",
            *(str(p.relative_to(PACKS_DIR)) for p in PLAYBOOK_DIRS),
        ],
        cwd=PACKS_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ANSIBLE_LIBRARY": modules},
    )
    assert result.returncode == 0, result.stdout + result.stderr
