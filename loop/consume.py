"""Findings -> incidents: the daemon's consumer of the analyzer's findings.

    consumer = Consumer(store, analyzer, admission, standing, health, events, walk)
    consumer.queue.put_nowait(findings)     # the engine's hand-over (Engine.hand_over)
    await consumer.run()                    # supervised by the engine: runs for ever

A finding is held (loop/admission.py) until its incident is committed or a live
incident already handles its fault, so an SQL outage (locked past the busy timeout, disk
full, read-only, server down) delays it and never loses it: the outage raises out of
``_consume``, the supervisor (loop/supervise.py) counts it, waits and starts it again,
and the held findings are opened once SQL is back. One finding that fails for another
reason (a bug) is counted, logged and dropped; the others go on. Incidents are opened
within a budget per minute, the best-ranked target first (established, then severity),
new targets within half of it; findings of an over-budget minute wait, counted as
``deferred``. An ``anomaly`` finding (sustained anomalies no rule explains,
loop/sustained.py) opens an incident of its own only when no rule finding of its target
is handled in the same pass, no incident of the target is in flight and none was opened
since the anomalies began (a rule's incident that ended meanwhile); else it is released
as ``explained``. The SQL work runs in a
worker thread: a locked database never stalls the event loop (and the API on it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kernel.logsafe import safe
from kernel.models import Finding, FindingKind
from kernel.state import State
from loop.admission import Admission, Standing, rank
from loop.analyze import Analyzer
from loop.db.engine import store_outage
from loop.events import Events
from loop.rca import independent_problems
from loop.store import IncidentStore
from loop.supervise import Health

log = logging.getLogger("mendloop.daemon")


class Consumer:
    """Findings in, incidents opened and handed to ``walk`` (see the module doc)."""

    def __init__(
        self,
        store: IncidentStore,
        analyzer: Analyzer,
        admission: Admission,
        standing: Standing,
        health: Health,
        events: Events,
        walk: Callable[[str], None],
    ) -> None:
        self.store = store
        self.analyzer = analyzer
        self.admission = admission
        self.standing = standing
        self.health = health
        self.events = events
        self.walk = walk  # on the event loop: the engine's walk of a new incident
        self.queue: asyncio.Queue[list[Finding]] = asyncio.Queue()

    async def run(self) -> None:
        """Take findings into the held set and open their incidents. An SQL outage raises
        out of here: the supervisor retries after a backoff and the findings stay held."""
        while True:
            if not len(self.admission):
                self._take(await self.queue.get())
            while not self.queue.empty():
                self._take(self.queue.get_nowait())
            await self._open_held()
            self.health.ok("findings")
            if len(self.admission):  # over budget: they wait, counted
                self.admission.defer_all()
                wait_s = self.admission.budget_in(self.admission.holds_established())
                await self._take_for(max(wait_s, 0.1))

    def _take(self, findings: list[Finding]) -> bool:
        """Hold them, ranked; True when one is of an established target."""
        established_any = False
        for finding in findings:
            rule = self.analyzer.rules.get(finding.rule_id)
            established = self.standing.established(finding.target)
            severity = rule.severity if rule is not None else None
            self.admission.hold(finding, rank(established, severity, time.monotonic()))
            established_any |= established
        return established_any

    async def _take_for(self, seconds: float) -> None:
        """Take what arrives for ``seconds``; sooner when a finding of an established
        target comes and the minute still has room for it."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                batch = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                return
            if self._take(batch) and self.admission.budget(established=True) > 0:
                return

    async def _open_held(self) -> None:
        """Open incidents for held findings, best-ranked target first, within the budget
        (new targets within their share of it)."""
        for target, established, group in self.admission.by_rank():
            if self.admission.budget(established) <= 0:
                return  # what follows ranks lower (new after established): it waits
            try:
                await self._open_target(target, established, group)
            except Exception as exc:
                if store_outage(exc):
                    raise  # held, retried after the backoff
                self.health.failed("findings", exc)  # one bad item: counted, the rest go on
                self.admission.release(group, "failed")

    async def _open_target(self, target: str, established: bool, group: list[Finding]) -> None:
        unexplained = [f for f in group if f.kind == FindingKind.anomaly]
        group = [f for f in group if f.kind != FindingKind.anomaly]
        gone = [f for f in group if f.rule_id not in self.analyzer.rules]
        if gone:  # its rule was removed by a reload meanwhile
            self.admission.release(gone, "rule_gone")
            group = [f for f in group if f.rule_id in self.analyzer.rules]
        with self.health.waiting("sql"):
            handled, live = await asyncio.to_thread(self._in_flight, target)
            if unexplained and not live and not group:
                since = min(f.started_at for f in unexplained)
                live = await asyncio.to_thread(self._opened_since, target, since)
        joined = [f for f in group if self._fault_of(f) in handled]
        if joined:
            self.admission.release(joined, "joined")
            log.info("%d finding(s) on %s belong to incidents in flight", len(joined), safe(target))
        fresh = [f for f in group if self._fault_of(f) not in handled]
        for problem in independent_problems(fresh, self._component_of, self.analyzer.topology):
            if self.admission.budget(established) <= 0:
                return  # the rest stays held
            with self.health.waiting("sql"):
                incident_id = await asyncio.to_thread(self.store.open_incident, target, problem)
            self.admission.release(problem, "opened")
            self.admission.opened(established)
            self.health.ok("sql")
            self.events.emit(incident_id, target, State.open, f"{len(problem)} rule finding(s)")
            self.walk(incident_id)
        if unexplained:
            await self._open_unexplained(target, established, unexplained, bool(group) or live)

    async def _open_unexplained(
        self, target: str, established: bool, found: list[Finding], explained: bool
    ) -> None:
        """Sustained anomalies no rule explains (loop/sustained.py): an incident of their
        own, unless a rule finding of the target was just handled, an incident of it is in
        flight or one opened since the anomalies began (the rules saw them: ``explained``)."""
        if explained:
            self.admission.release(found, "explained")
            return
        if self.admission.budget(established) <= 0:
            return  # held: opened when the minute has room
        with self.health.waiting("sql"):
            incident_id = await asyncio.to_thread(self.store.open_incident, target, found[:1])
        self.admission.release(found, "opened")
        self.admission.opened(established)
        self.health.ok("sql")
        note = f"{len(found[0].series)} series abnormal, no rule explains them"
        self.events.emit(incident_id, target, State.open, note)
        self.walk(incident_id)

    def _fault_of(self, finding: Finding) -> str:
        return self.analyzer.rules[finding.rule_id].fault

    def _component_of(self, finding: Finding) -> str:
        return self.analyzer.rules[finding.rule_id].component

    def _in_flight(self, target: str) -> tuple[set[str], bool]:
        """Faults a live incident of the target already handles (more findings of the same
        fault join nothing new; a different fault is a problem of its own: its remediation
        still waits for the target's lock), and whether any incident of it is live."""
        live = self.store.unfinished(target)
        faults = {
            self._fault_of(f)
            for incident in live
            for f in incident.findings
            if f.kind == FindingKind.rule and f.rule_id in self.analyzer.rules
        }
        return faults, bool(live)

    def _opened_since(self, target: str, since: float) -> bool:
        """An incident of the target opened at or after ``since`` (unix s), ended or not."""
        newest = self.store.list(target=target, limit=1)
        return bool(newest) and newest[0].opened_at.timestamp() >= since
