"""The incident state machine (DESIGN.md), as data.

    open -> analyzed -> decided -> [awaiting_approval -> approved | rejected]
         -> executing -> verifying -> resolved | rolled_back | escalated

Any non-terminal state may also go to ``escalated``: a stage that cannot go on hands the
incident to a human with its reason rather than leaving it hanging. What people add
(loop/operations.py, called by the API and chat):

- ``approved -> awaiting_approval``: the plan recomputed just before the run differs from
  the approved one, so the approval is void and asked again;
- ``analyzed | decided | awaiting_approval -> analyzed``: re-run the analysis (and then
  the decision); ``-> decided``: a person proposes another solution;
- ``closed`` (terminal): a person closes an incident that is not running (not
  ``executing``/``verifying``), also one the loop ended ``escalated`` or ``rolled_back``
  and left to a person. ``resolved``, ``rejected`` and ``closed`` are final.
"""

from __future__ import annotations

from enum import StrEnum

from kernel.errors import IllegalTransition


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
    closed = "closed"


# the loop is done with these (the daemon drives nothing from them)
TERMINAL = frozenset(
    {State.resolved, State.rolled_back, State.escalated, State.rejected, State.closed}
)
# a playbook may be running: people cannot close or escalate these
RUNNING = frozenset({State.executing, State.verifying})
# manual actions: what a person may re-analyse / propose a fix for / close
REDECIDABLE = frozenset({State.analyzed, State.decided, State.awaiting_approval})
CLOSABLE = frozenset(set(State) - RUNNING - {State.resolved, State.rejected, State.closed})

_FORWARD: dict[State, frozenset[State]] = {
    State.open: frozenset({State.analyzed}),
    State.analyzed: frozenset({State.decided}),
    State.decided: frozenset({State.awaiting_approval, State.executing}),
    State.awaiting_approval: frozenset({State.approved, State.rejected}),
    State.approved: frozenset({State.executing, State.awaiting_approval}),
    State.executing: frozenset({State.verifying, State.rolled_back}),
    State.verifying: frozenset({State.resolved, State.rolled_back}),
}


def _allowed(state: State) -> frozenset[State]:
    edges = set(_FORWARD.get(state, frozenset()))
    if state not in TERMINAL:
        edges.add(State.escalated)
    if state in REDECIDABLE:
        edges |= {State.analyzed, State.decided}
    if state in CLOSABLE:
        edges.add(State.closed)
    return frozenset(edges)


ALLOWED: dict[State, frozenset[State]] = {state: _allowed(state) for state in State}


def check_transition(current: State, target: State) -> None:
    if target not in ALLOWED[current]:
        allowed = ", ".join(sorted(ALLOWED[current])) or "nothing (terminal)"
        raise IllegalTransition(f"{current} -> {target} is not allowed; from {current}: {allowed}")
