"""What listeners hear of the loop: one StageEvent per step of an incident, and automation
paused or resumed.

    events = Events()
    events.listeners.append(chat.notify)          # never blocks, never raises into the loop
    events.emit(incident_id, target, State.analyzed, "root cause x")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from kernel.models import utcnow
from kernel.state import State

log = logging.getLogger("mendloop.daemon")


@dataclass(frozen=True)
class StageEvent:
    """What listeners (chat, the web page) hear. ``kind`` ``incident``: an incident moved
    (or a step of it happened) and ``state`` is where it is; ``automation``: automation
    was paused or resumed, ``incident_id`` is empty, ``target`` the paused target or
    ``*`` (everywhere) and ``state`` None."""

    incident_id: str
    target: str
    state: State | None
    note: str
    at: datetime
    kind: str = "incident"


Listener = Callable[[StageEvent], None]


class Events:
    """The listeners and the one way to tell them; a listener that fails is logged."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    def emit(
        self, incident_id: str, target: str, state: State | None, note: str, kind: str = "incident"
    ) -> None:
        event = StageEvent(incident_id, target, state, note, utcnow(), kind)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("stage listener failed")
