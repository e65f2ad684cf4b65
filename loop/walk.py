"""The walk of one incident through the steps table, one supervised task per incident.

    walker = Walker(store, steps.table(), moves, run_gate, analyzer, standing, health, backoff)
    walker.spawn(incident_id)        # on the event loop: walks it from its stored state
    walker.in_flight()               # incidents being walked now

Each step returns a Transition that is applied here (loop/moves.py). The walk holds the
target's lock (one remediation at a time per target); steps that run playbooks (dry
runs, runs: ``decided``, ``approved``, ``executing``) also wait for a run slot, best rank
first. A step that fails escalates its incident with why; an SQL or Neo4j outage raises
out of the walk and the supervisor walks it again from its stored state, never escalating
it for that. A person may move the incident meanwhile: then their walk goes on and this
one stops quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from kernel.errors import GraphUnavailable, IllegalTransition, MendloopError
from kernel.state import State
from loop.admission import Rank, RunGate, Standing, rank
from loop.analyze import Analyzer
from loop.cluster.fence import LeaseLost
from loop.db.engine import store_outage
from loop.moves import Moves
from loop.steps import Step
from loop.store import IncidentStore, IncidentView
from loop.supervise import Backoff, Health, supervised
from loop.transition import Transition

log = logging.getLogger("mendloop.daemon")
RUN_STATES = frozenset({State.decided, State.approved, State.executing})  # playbooks run here


def dependency_down(exc: BaseException) -> str | None:
    """The dependency an exception says is out (``sql``, ``neo4j``), or None (a bug)."""
    if store_outage(exc):
        return "sql"
    return "neo4j" if isinstance(exc, GraphUnavailable) else None


class Walker:
    def __init__(
        self,
        store: IncidentStore,
        table: dict[State, Step],
        moves: Moves,
        run_gate: RunGate,
        analyzer: Analyzer,
        standing: Standing,
        health: Health,
        backoff: Backoff,
    ) -> None:
        self.store = store
        self.table = table
        self.moves = moves
        self.run_gate = run_gate
        self.analyzer = analyzer  # the rules' severities rank a walk for its run slot
        self.standing = standing
        self.health = health
        self.backoff = backoff
        self.walks: dict[str, asyncio.Task[None]] = {}
        self._target_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def in_flight(self) -> int:
        return len(self.walks)

    def spawn(self, incident_id: str) -> None:
        """Walk the incident (on the event loop) from its stored state, supervised."""
        walk = supervised(
            "incident walk",
            lambda: self._drive(incident_id),
            self.health,
            self.backoff,
            retry=lambda exc: dependency_down(exc) is not None,  # from its stored state
            blame=dependency_down,
        )
        task = asyncio.create_task(walk, name=f"incident-{incident_id}")
        self.walks[incident_id] = task
        task.add_done_callback(
            lambda done: self.walks.pop(incident_id, None)
            if self.walks.get(incident_id) is done
            else None
        )

    def _run_rank(self, incident: IncidentView) -> Rank:
        severities = [
            rule.severity
            for f in incident.findings
            if (rule := self.analyzer.rules.get(f.rule_id)) is not None
        ]
        best = min(severities, key=lambda s: rank(False, s, 0), default=None)
        established = self.standing.established(incident.target)
        return rank(established, best, incident.opened_at.timestamp())

    async def _step(self, incident: IncidentView) -> Transition:
        """One step; those that run playbooks (dry runs, runs) wait for a run slot."""
        step = self.table[incident.state]
        if incident.state not in RUN_STATES:
            return await step.run(incident)
        async with self.run_gate.slot(self._run_rank(incident)):
            return await step.run(incident)

    def _escalate(self, incident: IncidentView, reason: str) -> None:
        self.moves.apply(incident, Transition.escalate(reason))

    async def _drive(self, incident_id: str) -> None:
        """Walk one incident through the steps under its target's lock (see the module
        doc). An SQL outage raises out of here."""
        with self.health.waiting("sql"):
            incident = await asyncio.to_thread(self.store.get, incident_id)
        if incident is None:
            log.error("incident %s to walk does not exist", incident_id)
            return
        async with self._target_locks[incident.target]:
            incident = await asyncio.to_thread(self.store.get, incident_id)  # after the wait
            assert incident is not None
            while not incident.terminal and incident.state in self.table:
                before, stamp = incident.state, incident.updated_at
                try:
                    self.moves.apply(incident, await self._step(incident))
                except asyncio.CancelledError:
                    raise
                except GraphUnavailable:
                    raise  # Neo4j out past the matcher's own retries: walked again later
                except LeaseLost as exc:  # another worker owns the target now: it walks on
                    log.warning("incident %s: %s; its new owner walks it on", incident_id, exc)
                    return
                except IllegalTransition as exc:
                    now = self.store.get(incident_id)
                    if now is not None and now.updated_at != stamp:
                        log.info("incident %s was moved by someone else: %s", incident_id, exc)
                        return
                    self._escalate(incident, f"{incident.state} failed: {exc}")
                except MendloopError as exc:
                    self._escalate(incident, f"{incident.state} failed: {exc}")
                except Exception as exc:  # a bug must not take the daemon down
                    if store_outage(exc):
                        raise  # not the incident's fault: never escalated for it
                    log.exception(
                        "incident %s: unexpected error in %s", incident.id, incident.state
                    )
                    self._escalate(incident, f"internal error in {incident.state}: {exc!r}")
                now_view = await asyncio.to_thread(self.store.get, incident_id)
                assert now_view is not None
                incident = now_view
                self.health.ok("incident walk")
                self.health.ok("sql")
                if incident.state == before:  # never run a step (a playbook!) twice in a row
                    if incident.updated_at != stamp:  # a person put it back: their walk goes on
                        return
                    log.error("incident %s did not leave %s; left to a person", incident_id, before)
                    return
