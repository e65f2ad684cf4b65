"""The remediation plan (loop/planner.py, kernel/plan.py) made from the shipped library:
everything that will run resolved once, with the daemon's settings as the bounds, and an
incident decided before plans existed given its plan from the library."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kernel.approval import ApprovalPlan
from kernel.config import DEFAULT_SITE
from kernel.errors import KnowledgeError
from kernel.models import Decision, DecisionMode, Evidence, Finding, FindingKind
from kernel.state import State
from loop.planner import Planner, Subject
from loop.solutions import SolutionSpec, load_library
from loop.steps import Plans, subject
from loop.store import IncidentStore
from sites import load_site
from sites.model import Inventory

LIBRARY = load_library()  # the power-marketing pack's
BASE = {"twin_url": "http://127.0.0.1:9"}
SITE = load_site(DEFAULT_SITE)


def estate(library=LIBRARY, defaults=BASE):
    """The bundled twin site with this library and these parameter defaults."""
    return dataclasses.replace(SITE, library=library, defaults=defaults)


def finding(series: str) -> Finding:
    evidence = Evidence(series=series, value=0.4, threshold=0.7, direction="low", since=1.0)
    return Finding(
        kind=FindingKind.rule,
        target="pm-site-1",
        series=(series,),
        rule_id="r",
        started_at=1.0,
        score=0.9,
        evidence=(evidence,),
    )


def test_the_plan_is_the_library_entry_resolved_once() -> None:
    spec = LIBRARY["sol-cache-scale-out"]
    planner = Planner(estate(), verify_hold_s=5.0, verify_timeout_s=600.0)
    plan = planner.resolve(
        Subject("i1", "pm-site-1", (finding("cache_hit_ratio"),)), "sol-cache-scale-out"
    )
    assert (plan.playbook, plan.rollback_playbook) == (spec.playbook, spec.rollback_playbook)
    assert plan.extra_vars == spec.render_vars({"target": "pm-site-1"}, BASE)
    assert (plan.pack, plan.hosts) == ("power-marketing", ("localhost",))
    assert (plan.risk, plan.check_mode, plan.blast_radius) == (
        spec.risk,
        spec.check_mode,
        spec.blast_radius,
    )
    assert plan.preconditions == spec.preconditions
    wanted = spec.verification
    assert set(plan.verification.series) == {"cache_hit_ratio", *wanted.metrics}
    assert plan.verification.conditions == wanted.conditions
    assert plan.verification.hold_s == (wanted.hold_s or 5.0)
    assert plan.verification.deadline_s == min(wanted.deadline_s, 600.0)
    assert plan.verification.sqi_min == wanted.sqi_min


def test_the_daemon_settings_bound_the_verification() -> None:
    tight = Planner(estate(), verify_hold_s=2.5, verify_timeout_s=30.0)
    renderable = {
        sid: spec
        for sid, spec in LIBRARY.items()
        if all(p.default is not None or n in BASE for n, p in spec.parameters.items())
    }
    assert len(renderable) >= 12  # every twin fault's fix at least
    for solution_id, spec in renderable.items():
        verification = tight.resolve(Subject("i", "t"), solution_id).verification
        assert verification.deadline_s == min(spec.verification.deadline_s, 30.0)
        assert verification.hold_s == (spec.verification.hold_s or 2.5)


def test_what_cannot_be_planned_is_refused_with_why() -> None:
    planner = Planner(estate(defaults={}), verify_hold_s=5.0, verify_timeout_s=600.0)
    with pytest.raises(KnowledgeError, match="no solution sol-nope in the library"):
        planner.resolve(Subject("i", "t"), "sol-nope")
    # a solution whose typed parameters have no value: nothing is guessed
    with pytest.raises(KnowledgeError, match=r"parameter\(s\) twin_url have no value"):
        planner.resolve(Subject("i", "t"), "sol-cache-scale-out")
    # a value of the wrong type (the site's default) is refused by the parameter's type
    typed = Planner(estate(defaults={"twin_url": 5}), verify_hold_s=5.0, verify_timeout_s=600.0)
    with pytest.raises(KnowledgeError, match="bad parameters: parameter twin_url: 5 is not a str"):
        typed.resolve(Subject("i", "t"), "sol-cache-scale-out")


def test_the_approval_hash_covers_the_whole_plan() -> None:
    planner = Planner(estate(), verify_hold_s=5.0, verify_timeout_s=600.0)
    plan = planner.resolve(Subject("i", "pm-site-1"), "sol-cache-scale-out")
    shown = ApprovalPlan.of(plan, ("localhost",), None)
    assert ApprovalPlan.of(plan, ("localhost",), None).plan_hash == shown.plan_hash
    for change in (
        {"blast_radius": plan.blast_radius + 1},
        {"preconditions": ()},
        {"verification": plan.verification.model_copy(update={"hold_s": 99.0})},
        {"extra_vars": {**plan.extra_vars, "target": "pm-site-2"}},
    ):
        other = ApprovalPlan.of(plan.model_copy(update=change), ("localhost",), None)
        assert other.plan_hash != shown.plan_hash, change
        assert shown.differences(other), change
    assert ApprovalPlan.of(plan, ("localhost",), None, requested_by="bob").plan_hash == (
        shown.plan_hash  # who asks is not what runs
    )
    assert shown.check_status is None and shown.rollback_vars == plan.extra_vars


def test_an_incident_decided_before_plans_gets_its_plan_from_the_library(tmp_path) -> None:
    """A decision stored by the code before plans (it named the playbook and vars itself)
    loads, and the steps get the plan from the library; one stored with a plan keeps it."""
    store = IncidentStore(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        incident_id = store.open_incident("pm-site-1", [finding("cache_hit_ratio")])
        legacy = {
            "incident_id": incident_id,
            "solution_id": "sol-cache-scale-out",
            "playbook": "cache_scale_out.yml",
            "rollback_playbook": "cache_scale_out_rollback.yml",
            "extra_vars": {"target": "pm-site-1"},
            "mode": "auto",
            "reason": "decided before plans",
        }
        store.transition(incident_id, State.analyzed, "old")
        decision = Decision.model_validate(legacy)
        assert decision.mode == DecisionMode.auto and not hasattr(decision, "playbook")
        store.transition(incident_id, State.decided, "old", decision=decision)
        incident = store.get(incident_id)
        assert incident is not None and incident.remediation is None
        planner = Planner(estate(), verify_hold_s=5.0, verify_timeout_s=600.0)
        plan = Plans(planner).of(incident)
        assert plan == planner.resolve(subject(incident), "sol-cache-scale-out")
        assert "cache_hit_ratio" in plan.verification.series  # the finding's series
        stored = store.transition(incident_id, State.awaiting_approval, "asked", remediation=plan)
        assert Plans(planner).of(stored) == plan  # the stored one: no library read
    finally:
        store.close()


def test_parameters_get_values_from_label_inventory_site_default_then_their_own() -> None:
    """docs/SITES.md, parameter sources: first found wins; each value typed and validated;
    one with no source at all stops the plan with the reason."""
    spec = SolutionSpec.model_validate(
        {
            "id": "sol-p",
            "title": "p",
            "faults": ["cache_saturation"],
            "risk": "low",
            "playbook": "cache_scale_out.yml",
            "parameters": {
                "node": {"type": "str", "from_label": "instance", "from_inventory": "node"},
                "port": {"type": "int", "from_inventory": "redis_port", "max": 65535},
                "mode": {"type": "str", "choices": ["soft", "hard"]},
                "retries": {"type": "int", "default": 3},
            },
        }
    ).model_copy(update={"pack": "power-marketing"})
    inventory = Inventory(
        Path("inventory"),
        {"box-1": {"node": "from-inventory", "redis_port": 6380}},
        {"all": ("box-1",)},
    )
    site = dataclasses.replace(
        SITE,
        library={"sol-p": spec},
        defaults={"mode": "soft", "node": "from-default"},
        inventory=inventory,
        target_hosts={"cache-1": ("box-1",)},
    )
    planner = Planner(site, verify_hold_s=5.0, verify_timeout_s=600.0)
    plan = planner.resolve(Subject("i", "cache-1", labels={"instance": "10.0.0.7:6379"}), "sol-p")
    assert plan.extra_vars == {
        "target": "cache-1",
        "node": "10.0.0.7:6379",  # the label wins
        "port": 6380,  # the host's inventory variable
        "mode": "soft",  # the site's default
        "retries": 3,  # its own default
    }
    assert plan.hosts == ("box-1",)
    without_label = planner.resolve(Subject("i", "cache-1"), "sol-p")
    assert without_label.extra_vars["node"] == "from-inventory"
    # a value that breaks the parameter's type or choices is refused, never passed
    bad = dataclasses.replace(site, defaults={"mode": "reboot"})
    with pytest.raises(KnowledgeError, match="mode: 'reboot' is not one of"):
        Planner(bad, 5.0, 600.0).resolve(Subject("i", "cache-1"), "sol-p")
    # no source at all: the plan stops, naming the parameter
    bare = dataclasses.replace(site, defaults={})
    with pytest.raises(KnowledgeError, match=r"parameter\(s\) mode have no value"):
        Planner(bare, 5.0, 600.0).resolve(Subject("i", "cache-1"), "sol-p")
    # an unmapped target of a site without default hosts: nothing to run on, said so
    nowhere = dataclasses.replace(site, default_hosts=())
    with pytest.raises(KnowledgeError, match="target other has no inventory host"):
        Planner(nowhere, 5.0, 600.0).resolve(Subject("i", "other"), "sol-p")


def test_the_labels_of_the_series_that_fired_reach_from_label(tmp_path) -> None:
    """A finding's label set is stored with the incident and read by the plan's subject;
    the target is always the incident's own, whatever a label says."""
    store = IncidentStore(f"sqlite:///{tmp_path / 'labels.db'}")
    try:
        labelled = finding("cache_hit_ratio").model_copy(
            update={"labels": (("instance", "10.0.0.7:6379"), ("target", "elsewhere"))}
        )
        incident_id = store.open_incident("pm-site-1", [finding("cache_qps"), labelled])
        incident = store.get(incident_id)
        assert incident is not None
        assert subject(incident).labels == {"instance": "10.0.0.7:6379", "target": "pm-site-1"}
    finally:
        store.close()
