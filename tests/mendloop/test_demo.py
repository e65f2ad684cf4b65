"""The demo's report (mendloop/demo.py): DESIGN.md's shape, plus how each fix was allowed to
run. The demo itself drives the same loop as tests/e2e (which run it on every fault)."""

from __future__ import annotations

from mendloop.demo import incident_summary, summarise

DESIGN_FIELDS = {
    "fault",
    "detected_after_s",
    "rca_after_s",
    "top_cause",
    "matched_case",
    "similarity",
    "playbook",
    "mode",
    "verified",
    "mttr_s",
}


def row(fault, mode, mttr, approved=None, runs=("check", "run"), fixes=True, **kw):
    base = incident_summary(fault, 0.0, None)
    base.update(
        mode=mode,
        mttr_s=mttr,
        state="resolved" if mttr else "rolled_back",
        top_cause=fault,
        approved_via=approved,
        runs=list(runs),
        rolled_back=not mttr,
        remedy_fixes_fault=fixes,
        **kw,
    )
    return base


def test_rows_keep_the_design_shape_even_when_nothing_was_detected() -> None:
    assert set(incident_summary("cache_saturation", 0.0, None)) >= DESIGN_FIELDS


def test_summary_counts_paths_and_wrong_remedies() -> None:
    rows = [
        row("a", "auto", 10.0),
        row("b", "auto", 30.0),
        row("c", "approval", 20.0, approved="POST /v1/incidents/x/approve"),
        row("d", "auto", None, fixes=False, runs=("check", "run", "rollback")),
    ]
    summary = summarise(rows)
    assert summary["faults"] == 4 and summary["resolved"] == 3
    assert summary["mttr_s_p50"] == 20.0 and summary["mttr_s_p50_automatic"] == 20.0
    assert (summary["automatic"], summary["approved_via_api"]) == (3, 1)
    assert (summary["rolled_back"], summary["wrong_remedies"], summary["rca_top1"]) == (1, 1, 4)
