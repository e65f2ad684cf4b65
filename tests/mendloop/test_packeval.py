"""`mendloop eval packs` without starting anything: the summary of measured rows (a fault
that did not end verified is counted, never averaged in) and the command's refusals."""

from __future__ import annotations

import pytest

from kernel.errors import MendloopError
from mendloop.cli import build_parser
from mendloop.packeval import PATHS, _split, summarize


def row(path: str, fault: str, state: str, verification: str | None, detect, mttr) -> dict:
    return {"pack": "redis", "path": path, "fault": fault, "state": state,
            "verification": verification, "detection_s": detect, "mttr_s": mttr}  # fmt: skip


def test_summary_counts_every_fault_and_medians_only_verified_fixes() -> None:
    rows = [
        row("pull", "a", "resolved", "passed", 2.0, 10.0),
        row("pull", "b", "resolved", "passed", 4.0, 20.0),
        row("pull", "c", "escalated", "timed_out", 1.0, None),
        row("alertmanager", "a", "error", None, None, None),
    ]
    summary = {s["path"]: s for s in summarize(rows)}
    assert summary["pull"] == {
        "pack": "redis", "path": "pull", "faults": 3, "verified_fixed": 2,
        "median_detection_s": 3.0, "median_mttr_s": 15.0,
    }  # fmt: skip
    assert summary["alertmanager"]["faults"] == 1
    assert summary["alertmanager"]["verified_fixed"] == 0
    assert summary["alertmanager"]["median_mttr_s"] is None


def test_unknown_packs_and_paths_are_refused_by_name() -> None:
    assert _split(None, PATHS, "paths") == list(PATHS)
    assert _split("push, pull", PATHS, "paths") == ["push", "pull"]
    with pytest.raises(MendloopError, match="unknown paths: carrier-pigeon"):
        _split("pull,carrier-pigeon", PATHS, "paths")


def test_eval_packs_is_a_kind_of_eval() -> None:
    args = build_parser().parse_args(["eval", "packs", "--packs", "redis", "--paths", "pull"])
    assert (args.kind, args.packs, args.paths) == ("packs", "redis", "pull")
    assert "packs" in args.more


def test_a_service_not_healthy_again_is_a_flag_not_an_error(tmp_path) -> None:
    from mendloop.packeval import healthy_within
    from mendloop.servicelab import Lab

    with Lab(tmp_path) as lab:
        assert healthy_within(lab, lambda: True, 1) is True
        assert healthy_within(lab, lambda: False, 0.5) is False
