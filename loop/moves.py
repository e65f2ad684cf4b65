"""Transitions applied: persisted (guarded by the state they leave, loop/store.py) and told
to the listeners. The engine applies what each step returns; a step that must persist a
state before it acts (``executing`` before a playbook starts) applies that one itself.

    moves = Moves(store, events)
    view = moves.apply(incident, Transition(State.analyzed, "root cause x", report=report))
    moves.apply(incident, Transition.escalate("no rule explains the findings"))
"""

from __future__ import annotations

import logging

from kernel.errors import IllegalTransition
from kernel.state import State
from loop.cluster.fence import Fence
from loop.events import Events
from loop.store import IncidentStore, IncidentView
from loop.transition import Transition

log = logging.getLogger("mendloop.daemon")


class Moves:
    def __init__(self, store: IncidentStore, events: Events) -> None:
        self.store = store
        self.events = events
        self.fence: Fence | None = None  # several workers: the target's lease (loop/cluster)

    def apply(self, incident: IncidentView, transition: Transition) -> IncidentView | None:
        """The incident moved (its new view). An escalation is best effort: an incident
        that ended meanwhile, or cannot be escalated from where it is now, stays (None)."""
        if transition.state == State.escalated:
            return self._escalate(incident, transition)
        view = self.store.apply(incident.id, transition, self.fence)
        self.events.emit(incident.id, incident.target, transition.state, transition.note)
        return view

    def _escalate(self, incident: IncidentView, transition: Transition) -> IncidentView | None:
        current = self.store.get(incident.id)
        if current is None or current.terminal:
            return None
        try:
            view = self.store.apply(incident.id, transition, self.fence)
        except IllegalTransition:
            log.warning("incident %s could not be escalated from %s", incident.id, current.state)
            return None
        self.events.emit(incident.id, incident.target, State.escalated, transition.note)
        return view
