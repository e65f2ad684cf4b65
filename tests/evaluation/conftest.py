"""The public datasets live next to the repo (../shared/datasets); tests that read them
are skipped, with the reason, where they are not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.cli import DEFAULT_DATASETS


def _root(name: str) -> Path:
    root = DEFAULT_DATASETS / name
    if not root.is_dir():
        pytest.skip(f"dataset {root} not present")
    return root


@pytest.fixture(scope="session")
def nab_root() -> Path:
    return _root("nab")


@pytest.fixture(scope="session")
def smd_root() -> Path:
    return _root("smd")
