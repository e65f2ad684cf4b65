import itertools

import pytest

from kernel.errors import IllegalTransition
from kernel.state import ALLOWED, RUNNING, TERMINAL, State, check_transition


def test_happy_path_is_allowed():
    path = [
        State.open,
        State.analyzed,
        State.decided,
        State.executing,
        State.verifying,
        State.resolved,
    ]
    for current, nxt in itertools.pairwise(path):
        check_transition(current, nxt)


def test_approval_branch():
    check_transition(State.decided, State.awaiting_approval)
    check_transition(State.awaiting_approval, State.approved)
    check_transition(State.approved, State.executing)
    check_transition(State.awaiting_approval, State.rejected)


@pytest.mark.parametrize("state", sorted(set(State) - TERMINAL))
def test_every_live_state_can_escalate(state):
    check_transition(state, State.escalated)


@pytest.mark.parametrize("state", sorted({State.resolved, State.rejected, State.closed}))
def test_final_states_are_final(state):
    assert ALLOWED[state] == frozenset()
    with pytest.raises(IllegalTransition, match="terminal"):
        check_transition(state, State.open)


@pytest.mark.parametrize("state", [State.escalated, State.rolled_back])
def test_what_the_loop_left_to_a_person_can_only_be_closed(state):
    assert state in TERMINAL
    assert ALLOWED[state] == frozenset({State.closed})


def test_people_close_anything_not_running_but_nothing_running():
    for state in set(State) - TERMINAL - RUNNING:
        check_transition(state, State.closed)
    for state in RUNNING:
        with pytest.raises(IllegalTransition):
            check_transition(state, State.closed)


def test_a_void_approval_waits_again_and_people_redecide():
    check_transition(State.approved, State.awaiting_approval)
    for state in (State.analyzed, State.decided, State.awaiting_approval):
        check_transition(state, State.analyzed)  # re-analysis
        check_transition(state, State.decided)  # a person proposes a fix
    with pytest.raises(IllegalTransition):
        check_transition(State.executing, State.analyzed)


def test_skipping_a_stage_is_refused():
    with pytest.raises(IllegalTransition, match="open -> executing"):
        check_transition(State.open, State.executing)
