"""The incident state machine (DESIGN.md), as data.

    open -> analyzed -> decided -> [awaiting_approval -> approved | rejected]
         -> executing -> verifying -> resolved | rolled_back | escalated

Any non-terminal state may also go to ``escalated``: a stage that cannot go on hands the
incident to a human with its reason rather than leaving it hanging.
"""

from __future__ import annotations

from enum import StrEnum

from loop.errors import IllegalTransition


class State(StrEnum):
    open = "open"
    analyzed = "analyzed"
    decided = "decided"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    rejected = "rejected"
    executing = "executing"
    verifying = "verifying"
    resolved = "resolved"
    rolled_back = "rolled_back"
    escalated = "escalated"


TERMINAL = frozenset({State.resolved, State.rolled_back, State.escalated, State.rejected})

_FORWARD: dict[State, frozenset[State]] = {
    State.open: frozenset({State.analyzed}),
    State.analyzed: frozenset({State.decided}),
    State.decided: frozenset({State.awaiting_approval, State.executing}),
    State.awaiting_approval: frozenset({State.approved, State.rejected}),
    State.approved: frozenset({State.executing}),
    State.executing: frozenset({State.verifying, State.rolled_back}),
    State.verifying: frozenset({State.resolved, State.rolled_back}),
}

ALLOWED: dict[State, frozenset[State]] = {
    state: _FORWARD.get(state, frozenset()) | ({State.escalated} - {state})
    if state not in TERMINAL
    else frozenset()
    for state in State
}


def check_transition(current: State, target: State) -> None:
    if target not in ALLOWED[current]:
        allowed = ", ".join(sorted(ALLOWED[current])) or "nothing (terminal)"
        raise IllegalTransition(f"{current} -> {target} is not allowed; from {current}: {allowed}")
