"""Every failure mode of the paper: own series past crit first, dependants later along
the dependency graph, the right remedy restores, a wrong one does not."""

from __future__ import annotations

import math

import pytest

from rules.catalog import load_catalog
from twin.faults import DEPENDENCIES, FAULTS, reach
from twin.model import METRICS, Twin, fault_effects
from twin.remedies import ACTIONS

T0 = 1_000_000.0
SITE = "pm-site-1"
CATALOG = load_catalog()
COMPONENT = {m.series: m.component for m in METRICS}
DT = 0.25


def first_crit(fault: str, seconds: float = 90.0, intensity: float = 1.0) -> dict[str, float]:
    """Seconds after injection at which each series first passes crit (noise-free)."""
    twin = Twin(targets=(SITE,), seed=0)
    twin.step(T0)
    twin.inject(SITE, fault, intensity=intensity)
    seen: dict[str, float] = {}
    for k in range(1, round(seconds / DT) + 1):
        twin.step(T0 + k * DT)
        for series, value in twin.levels(SITE).items():
            if series not in seen and CATALOG[series].is_breach(value, "crit"):
                seen[series] = k * DT
    return seen


def by_component(crossings: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for series, t in crossings.items():
        c = COMPONENT[series]
        out[c] = min(out.get(c, math.inf), t)
    return out


def right_actions(fault: str) -> list[str]:
    return sorted(a for a, spec in ACTIONS.items() if fault in spec.clears)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_moves_its_own_component_first_then_dependants(fault: str) -> None:
    spec = FAULTS[fault]
    crossings = first_crit(fault)
    first = by_component(crossings)
    assert spec.component in first, f"{fault} moves none of its own series past crit"
    own = first.pop(spec.component)
    assert all(t > own for t in first.values()), (own, first)
    # only components the graph reaches can move, and an upstream moves before its dependant
    reached = {c for c, _, _ in reach(spec.component, spec.spread)}
    assert set(first) <= reached
    for dep in DEPENDENCIES:
        if dep.upstream in first and dep.dependant in first:
            assert first[dep.upstream] < first[dep.dependant], dep
    # complaints come last of all (paper: within 2 h of a sag; compressed, order kept)
    if "customer_service" in first:
        others = [t for c, t in first.items() if c != "customer_service"]
        assert all(first["customer_service"] > t for t in [own, *others])


def test_cache_chain_follows_the_paper() -> None:
    """cache -> DB penetration -> DB latency -> API -> payment -> complaints."""
    first = by_component(first_crit("cache_saturation"))
    order = ["cache", "database", "api", "payment", "customer_service"]
    assert [first[c] for c in order] == sorted(first[c] for c in order)


def test_complaints_surge_after_a_sag_and_less_after_harmonics() -> None:
    def complaints_ratio(fault: str) -> float:
        twin = Twin(targets=(SITE,), seed=0)
        twin.step(T0)
        before = twin.levels(SITE)["cs_complaints_per_h"]
        twin.inject(SITE, fault)
        for k in range(1, 121):
            twin.step(T0 + k)
        return twin.levels(SITE)["cs_complaints_per_h"] / before

    assert complaints_ratio("voltage_sag") == pytest.approx(3.2, rel=0.03)
    assert complaints_ratio("harmonic_distortion") == pytest.approx(2.1, rel=0.03)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_paper_figures_are_reached(fault: str) -> None:
    """At intensity 1 every own effect settles on its figure (e.g. 1.8 s, 78 %, 7.3 %)."""
    twin = Twin(targets=(SITE,), seed=0)
    twin.step(T0)
    twin.inject(SITE, fault)
    for k in range(1, 61):
        twin.step(T0 + k)
    levels = twin.levels(SITE)
    for effect in fault_effects(fault):
        if effect.own and not effect.relative:
            assert levels[effect.series] == pytest.approx(effect.value, rel=0.01), effect


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_right_remedy_restores_everything(fault: str) -> None:
    for action in right_actions(fault):
        twin = Twin(targets=(SITE,), seed=1)
        twin.step(T0)
        twin.inject(SITE, fault)
        for k in range(1, 61):
            twin.step(T0 + k)
        assert twin.repair(SITE, action) is True
        for k in range(61, 121):
            twin.step(T0 + k)
        values = twin.state(SITE)["values"]
        bad = [s for s, v in values.items() if not CATALOG[s].is_healthy(v)]
        assert bad == [], (action, bad)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_wrong_remedies_do_not_fix(fault: str) -> None:
    own = [e.series for e in fault_effects(fault) if e.own]
    for action in sorted(set(ACTIONS) - set(right_actions(fault))):
        twin = Twin(targets=(SITE,), seed=1)
        twin.step(T0)
        twin.inject(SITE, fault)
        for k in range(1, 31):
            twin.step(T0 + k)
        assert twin.repair(SITE, action) is False
        for k in range(31, 91):
            twin.step(T0 + k)
        levels = twin.levels(SITE)
        assert any(CATALOG[s].is_breach(levels[s], "crit") for s in own), action
        assert twin.state(SITE)["faults"] == [fault]


def test_every_fault_has_a_remedy_and_every_remedy_a_fault() -> None:
    assert all(right_actions(f) for f in FAULTS)
    assert all(spec.clears for spec in ACTIONS.values())


def test_dependency_graph_only_names_known_components() -> None:
    components = {m.component for m in METRICS}
    for dep in DEPENDENCIES:
        assert {dep.upstream, dep.dependant} <= components
        assert dep.delay_s > 0
    assert {f.component for f in FAULTS.values()} <= components


def test_the_fault_file_is_refused_whole_with_its_problems_named(tmp_path) -> None:
    from twin.faults import FAULTS_FILE, load_faults

    _, dependencies, faults = load_faults(FAULTS_FILE)
    assert set(faults) == set(FAULTS) and len(dependencies) == len(DEPENDENCIES)
    bad = tmp_path / "faults.yaml"
    bad.write_text(
        "host_component: {}\ndependencies: []\n"
        "faults:\n  f:\n    component: cache\n    description: x\n    paper: p\n"
        "    effects: [{series: s, value: 1, tau_s: 0}]\n    colour: red\n"
    )
    with pytest.raises(ValueError) as refused:
        load_faults(bad)
    assert str(bad) in str(refused.value)
    assert "faults.f.effects.0.tau_s" in str(refused.value)
    assert "faults.f.colour" in str(refused.value)
