"""Every bundled pack's playbooks are ansible-lint clean, linted as the runner runs them:
every pack's modules on ANSIBLE_LIBRARY (loop/runner.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.config import PACKS_DIR

PLAYBOOK_DIRS = sorted(p for p in PACKS_DIR.glob("*/playbooks") if p.is_dir())


@pytest.mark.parametrize("playbooks", PLAYBOOK_DIRS, ids=lambda p: p.parent.name)
def test_the_pack_playbooks_are_ansible_lint_clean(playbooks: Path) -> None:
    lint = shutil.which("ansible-lint", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("ansible-lint is not installed (pip install -e .[dev])")
    modules = os.pathsep.join(str(p / "library") for p in PLAYBOOK_DIRS if (p / "library").is_dir())
    result = subprocess.run(
        [lint, "--offline", "-q", "--nocolor", "."],
        cwd=playbooks,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_LIBRARY": modules},
    )
    assert result.returncode == 0, result.stdout + result.stderr
