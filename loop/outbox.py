"""Outcomes on their way to the knowledge graph, kept in SQL until Neo4j has them.

    outbox = OutcomeOutbox(store.engine)
    outbox.put(incident_id, case, decision)   # committed before the graph is tried
    outbox.pending()                          # oldest first; delivered(case_id) when done
    delivery = OutcomeDelivery(graph, embedder, outbox, health)   # deliver(); run(): the task

A verified (or failed) fix becomes a case in the graph and moves its solution's success
statistics (loop/learn.py). Neo4j may be down just then; the outcome is written to the
``outcome_outbox`` table first, in the same database as the incident, and the daemon
delivers whatever is pending (at start, after a verification, and with backoff while
Neo4j is away). The graph write is idempotent, so an outcome delivered twice (a crash
between the write and ``delivered``) still counts once. An outcome the graph refuses for
its content (not an outage) leaves the queue marked ``refused``, with the error, so it
never blocks the ones behind it. Delivered rows are kept, with when, for the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from kernel.domain import Domain
from kernel.errors import GraphUnavailable
from kernel.models import Case, Decision, utcnow
from knowledge.embedding import Embedder
from knowledge.graph import KnowledgeGraph
from loop.db.engine import store_outage
from loop.db.migrate import ensure_schema
from loop.db.schema import OutcomeRecord
from loop.learn import record_outcome
from loop.supervise import Health, describe

log = logging.getLogger("mendloop.daemon")
LEARN_RETRY_S = 5.0  # a graph write waits this long for Neo4j, then the outbox retries it
OUTBOX_POLL_S = 60.0  # pending outcomes are looked at this often even without news


@dataclass(frozen=True)
class PendingOutcome:
    case: Case
    decision: Decision
    attempts: int


class OutcomeOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_schema(engine)

    def put(self, incident_id: str, case: Case, decision: Decision) -> None:
        """Queue an outcome (once per case: a resumed incident does not queue it again)."""
        with Session(self.engine) as session:
            if session.get(OutcomeRecord, case.id) is not None:
                return
            session.add(
                OutcomeRecord(
                    case_id=case.id,
                    incident_id=incident_id,
                    case=case.model_dump(mode="json"),
                    decision=decision.model_dump(mode="json"),
                    created_at=utcnow(),
                )
            )
            session.commit()

    def pending(self, limit: int = 100) -> list[PendingOutcome]:
        """Outcomes not yet in the graph, oldest first."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(OutcomeRecord)
                .where(col(OutcomeRecord.delivered_at).is_(None))
                .where(col(OutcomeRecord.refused).is_(False))
                .order_by(col(OutcomeRecord.created_at))
                .limit(limit)
            ).all()
            return [
                PendingOutcome(
                    Case.model_validate(r.case), Decision.model_validate(r.decision), r.attempts
                )
                for r in rows
            ]

    def count_pending(self) -> int:
        with Session(self.engine) as session:
            query = select(func.count()).select_from(OutcomeRecord)
            query = query.where(col(OutcomeRecord.delivered_at).is_(None))
            query = query.where(col(OutcomeRecord.refused).is_(False))
            return int(session.exec(query).one())

    def delivered(self, case_id: str) -> None:
        with Session(self.engine) as session:
            record = session.get(OutcomeRecord, case_id)
            if record is not None and record.delivered_at is None:
                record.delivered_at = utcnow()
                record.attempts += 1
                session.add(record)
                session.commit()

    def attempt_failed(self, case_id: str, error: str, refused: bool = False) -> None:
        """One more failed attempt; ``refused``: the graph will never take it as it is
        (its content, not an outage), so it leaves the queue (kept, with the error)."""
        with Session(self.engine) as session:
            record = session.get(OutcomeRecord, case_id)
            if record is not None:
                record.attempts += 1
                record.last_error = error[:500]
                record.refused = refused
                session.add(record)
                session.commit()

    def get(self, case_id: str) -> OutcomeRecord | None:
        with Session(self.engine) as session:
            record = session.get(OutcomeRecord, case_id)
            if record is not None:
                session.expunge(record)
            return record


class OutcomeDelivery:
    """Queued outcomes to the graph: one now (``deliver``, from the learn step), and the
    outbox task (``run``, supervised by the engine) for what could not go at once."""

    def __init__(
        self,
        graph: KnowledgeGraph,
        embedder: Embedder,
        outbox: OutcomeOutbox,
        health: Health,
        domain: Domain | None = None,
    ) -> None:
        self.domain = domain  # the site's (None: the power-marketing pack's)
        self.graph = graph
        self.embedder = embedder
        self.outbox = outbox
        self.health = health
        self.due = asyncio.Event()  # set: something waits in the outbox, try now
        self.lock = asyncio.Lock()  # one delivery at a time (the step's and the task's)

    async def deliver(self, case: Case, decision: Decision) -> bool:
        """One queued outcome to the graph: True when it is there, False when the graph
        refused it (not an outage: it leaves the queue, kept with its error). Neo4j out:
        GraphUnavailable, and it stays queued."""
        try:
            # in a thread: the write retries through a Neo4j restart, the loop must not wait
            await asyncio.to_thread(
                record_outcome,
                self.graph,
                self.embedder,
                case,
                decision,
                retry_s=LEARN_RETRY_S,
                domain=self.domain,
            )
        except Exception as exc:
            if store_outage(exc):
                raise
            outage = graph_outage(exc)
            error = describe(exc)
            await asyncio.to_thread(self.outbox.attempt_failed, case.id, error, outage is None)
            if outage is not None:
                raise outage from exc
            log.error("outcome %s refused by the graph, kept in the outbox: %s", case.id, error)
            return False
        await asyncio.to_thread(self.outbox.delivered, case.id)
        self.health.ok("neo4j")
        return True

    async def run(self) -> None:
        """The outbox task: outcomes not yet in the graph, oldest first, at start and
        whenever one is queued; Neo4j still away raises (the supervisor backs off)."""
        while True:
            self.due.clear()
            if self.health.streak("neo4j"):  # out (a walk or a delivery saw it): back yet?
                await asyncio.to_thread(self.graph.schema_version)
                self.health.ok("neo4j")
            async with self.lock:
                for item in await asyncio.to_thread(self.outbox.pending):
                    await self.deliver(item.case, item.decision)
            self.health.ok("outcomes")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.due.wait(), OUTBOX_POLL_S)


def graph_outage(exc: BaseException) -> GraphUnavailable | None:
    """The Neo4j outage behind an error (an import gives up on one as KnowledgeError)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, GraphUnavailable):
            return cause
        cause = cause.__cause__
    return None
