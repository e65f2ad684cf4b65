"""Earned autonomy (loop/policy.py): pure rules, and their persistence (loop/ledger.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kernel.models import DecisionMode
from kernel.shadow import ShadowScope
from loop.ledger import Ledger
from loop.policy import (
    AutonomyKey,
    PolicyConfig,
    after_outcome,
    choose_mode,
    initial_state,
    limit_reached,
    target_class,
)

KEY = AutonomyKey("sol-cache-scale-out", "cache_saturation", "pm-site")
auto, approval, suggest = DecisionMode.auto, DecisionMode.approval, DecisionMode.suggest


def test_target_class_drops_the_index() -> None:
    assert target_class("pm-site-1") == target_class("pm-site-17") == "pm-site"
    assert target_class("db01") == "db"
    assert target_class("edge") == "edge"


@pytest.mark.parametrize(
    ("successes", "failures", "level"),
    [(0, 0, suggest), (1, 0, approval), (2, 0, auto), (2, 1, approval), (5, 1, auto)],
)
def test_the_track_record_sets_the_starting_level(successes, failures, level) -> None:
    state = initial_state(KEY, successes, failures)
    assert state.level == level
    assert f"{successes} verified fix(es), {failures} failure(s)" in state.reason


def test_climbs_after_a_streak_and_drops_after_a_failure() -> None:
    state = initial_state(KEY, 1, 0)
    assert state.level == approval
    state = after_outcome(state, True, "i1")
    assert (state.level, state.streak) == (approval, 1)
    state = after_outcome(state, True, "i2")
    assert (state.level, state.streak, state.successes) == (auto, 0, 2)
    assert "climbed approval -> auto: 2 verified fix(es) in a row" in state.reason
    state = after_outcome(state, False, "i3")
    assert (state.level, state.failures) == (approval, 1)
    assert "verification failed (incident i3)" in state.reason
    state = after_outcome(state, False, "i4")
    assert state.level == suggest
    assert after_outcome(state, False, "i5").level == suggest  # the floor
    # a failure resets the streak: one success is not enough to climb again
    state = after_outcome(after_outcome(state, True, "i6"), False, "i7")
    assert (state.level, state.streak) == (suggest, 0)


def test_high_risk_never_runs_automatically() -> None:
    state = initial_state(KEY, 50, 0)
    assert state.level == auto
    mode, why = choose_mode(state, "high", 0, 0)
    assert mode == approval and "high risk: never automatic" in why
    assert choose_mode(state, "low", 0, 0)[0] == auto


def test_hourly_limits_make_a_runaway_loop_impossible() -> None:
    cfg = PolicyConfig(max_auto_per_target_per_hour=3, max_auto_per_hour=5)
    state = initial_state(KEY, 10, 0, cfg)
    assert choose_mode(state, "low", 2, 4, cfg)[0] == auto
    mode, why = choose_mode(state, "low", 3, 3, cfg)
    assert mode == approval and "3 automatic action(s) on this target" in why
    mode, why = choose_mode(state, "low", 0, 5, cfg)
    assert mode == approval and "5 automatic action(s) in the last hour" in why
    assert limit_reached(0, 0, cfg) is None
    # levels below auto are never raised by a limit
    assert choose_mode(initial_state(KEY, 1, 0, cfg), "low", 99, 99, cfg)[0] == approval


def test_ledger_persists_states_counts_each_outcome_once_and_limits(store) -> None:
    ledger = Ledger(store.engine)
    state = initial_state(KEY, 1, 0)
    ledger.save_autonomy(state)
    assert ledger.autonomy(KEY) == state
    state = ledger.record_outcome("i1", state, True)
    state = ledger.record_outcome("i2", state, True)
    assert ledger.record_outcome("i2", state, True) == state  # a resumed incident: once
    again = Ledger(store.engine).autonomy(KEY)  # "after a restart"
    assert again is not None and again.level == auto and again.successes == 2

    for incident in ("a", "b", "b"):  # the same incident counts once
        ledger.note_auto_action(incident, "pm-site-1", KEY.solution_id)
    ledger.note_auto_action("c", "pm-site-2", KEY.solution_id)
    assert ledger.auto_actions("pm-site-1", timedelta(hours=1)) == 2
    assert ledger.auto_actions(None, timedelta(hours=1)) == 3
    assert ledger.auto_actions(None, timedelta(seconds=-1)) == 0


def test_ledger_runs_are_keyed_once(store) -> None:
    ledger = Ledger(store.engine)
    assert ledger.begin_run("i1/sol-a/run", "i1", "run", "a.yml")
    assert not ledger.begin_run("i1/sol-a/run", "i1", "run", "a.yml")  # never twice
    assert ledger.run("i1/sol-a/run").status == "started"
    ledger.mark_interrupted("i1/sol-a/run", "crash")
    (record,) = ledger.runs("i1")
    assert (record.status, record.note) == ("interrupted", "crash")
    ledger.record_shadow("i2", "t", "sol-a", "a.yml", "auto", "why")
    ledger.record_shadow("i2", "t", "sol-a", "a.yml", "auto", "why")
    assert [r.incident_id for r in ledger.shadowed("t")] == ["i2"]


def test_shadow_scopes() -> None:
    assert ShadowScope.parse("").applies("pm-site-1", "sol-a") is None
    assert ShadowScope.parse("all").applies("x", "y") == "shadow mode everywhere"
    scope = ShadowScope.parse("target:pm-site-2, solution:sol-voltage-dvr")
    assert scope.applies("pm-site-2", "sol-a") == "shadow mode for target pm-site-2"
    assert scope.applies("x", "sol-voltage-dvr") == "shadow mode for solution sol-voltage-dvr"
    assert scope.applies("pm-site-1", "sol-a") is None
    with pytest.raises(ValueError, match="expected all, target:NAME or solution:ID"):
        ShadowScope.parse("pm-site-1")


def test_new_targets_share_the_hourly_budget_established_ones_do_not() -> None:
    cfg = PolicyConfig(max_auto_per_target_per_hour=6, max_auto_per_hour=10, new_target_share=0.5)
    assert cfg.max_auto_per_hour_new_targets == 5
    # a new target, while new targets took 4 of their 5: still automatic
    assert limit_reached(0, 4, cfg, recent_on_new_targets=4) is None
    # the fifth spent: the next new target waits for a person
    why = limit_reached(0, 5, cfg, recent_on_new_targets=5)
    assert why is not None and "reporting for a short while" in why
    # an established target is not bound by the new targets' share, only by the total
    assert limit_reached(0, 5, cfg) is None
    assert limit_reached(0, 10, cfg) is not None
    state = initial_state(KEY, 5, 0, cfg)
    assert choose_mode(state, "low", 0, 5, cfg)[0] == DecisionMode.auto
    assert choose_mode(state, "low", 0, 5, cfg, recent_on_new_targets=5)[0] == DecisionMode.approval
