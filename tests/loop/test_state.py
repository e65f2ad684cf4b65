import itertools

import pytest

from loop.errors import IllegalTransition
from loop.state import ALLOWED, TERMINAL, State, check_transition


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


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_are_final(state):
    assert ALLOWED[state] == frozenset()
    with pytest.raises(IllegalTransition, match="terminal"):
        check_transition(state, State.open)


def test_skipping_a_stage_is_refused():
    with pytest.raises(IllegalTransition, match="open -> executing"):
        check_transition(State.open, State.executing)
