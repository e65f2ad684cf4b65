"""What remediation remembers in SQL beside the incidents: autonomy, runs, automatic actions.

    ledger = Ledger(store.engine)
    ledger.begin_run("abc12/sol-x/run", "abc12", "run", "x.yml")   # committed BEFORE the run
    ledger.finish_run("abc12/sol-x/run", playbook_run, detail)
    ledger.autonomy(key) / ledger.record_outcome(...)            # earned autonomy (policy.py)

Tables (loop/db/schema.py, the incident database):
``execution_run`` one row per playbook invocation, keyed by its idempotency key, written
before ansible starts and completed when it ends (a row left ``started`` after a crash is
an interrupted run, which the daemon reconciles); ``autonomy`` one row per (solution,
fault, target class); ``autonomy_outcome`` which incidents were already counted (so a
resumed incident never counts twice); ``auto_action`` one row per automatic execution,
for the hourly limits; ``shadow_decision`` what shadow mode would have done;
``automation_pause`` one row per pause of automatic fixes (target ``*``: everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from kernel.approval import AutomationStatus, TargetPause
from kernel.models import DecisionMode, PlaybookRun, utcnow
from loop.cluster.fence import Fence
from loop.db.engine import aware
from loop.db.migrate import ensure_schema
from loop.db.schema import (
    AutoActionRecord,
    AutonomyOutcomeRecord,
    AutonomyRecord,
    ExecutionRunRecord,
    IncidentRecord,
    PauseRecord,
    ShadowRecord,
)
from loop.policy import AutonomyKey, AutonomyState, PolicyConfig, after_outcome

STARTED = "started"
INTERRUPTED = "interrupted"
EVERYWHERE = "*"  # the automation_pause row of a global pause
_AUTO_LOCK = 0x6D656E65  # the advisory lock of the hourly limits (PostgreSQL)


def _state(record: AutonomyRecord) -> AutonomyState:
    key = AutonomyKey(record.solution_id, record.fault, record.target_class)
    return AutonomyState(
        key,
        DecisionMode(record.level),
        record.successes,
        record.failures,
        record.streak,
        record.reason,
    )


CAPTURED_EVENT = "captured"  # a run's set_stats values, kept with its events


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.fence: Fence | None = None  # several workers: runs and auto actions fenced
        ensure_schema(engine)

    # -- runs (idempotency keys) ---------------------------------------------------------

    def begin_run(
        self, key: str, incident_id: str, phase: str, playbook: str, note: str = ""
    ) -> bool:
        """Record that a run is about to start; False when the key was used already (the
        run must then not start again). ``note`` says why it runs (e.g. why a rollback).
        With a fence: only while this worker holds the incident's target (LeaseLost)."""
        with Session(self.engine) as session:
            if self.fence is not None:
                incident = session.get(IncidentRecord, incident_id)
                self.fence.hold(session, incident.target if incident else "")
            session.add(
                ExecutionRunRecord(
                    key=key,
                    incident_id=incident_id,
                    phase=phase,
                    playbook=playbook,
                    status=STARTED,
                    started_at=utcnow(),
                    note=note,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return False
        return True

    def finish_run(
        self,
        key: str,
        run: PlaybookRun,
        events: list[dict[str, Any]],
        diff: list[str],
        artifacts: str | None,
        note: str = "",
        captured: dict[str, Any] | None = None,
    ) -> None:
        """The run's end; ``captured`` (its set_stats values) is kept as a last event
        ``{"event": "captured", "captured": {...}}`` for the rollback (``captured``)."""
        if captured:
            events = [*events, {"event": CAPTURED_EVENT, "captured": captured}]
        with Session(self.engine) as session:
            record = session.get(ExecutionRunRecord, key)
            assert record is not None, f"run {key} was never begun"
            record.status = run.status.value
            record.rc = run.rc
            record.changed = run.changed
            record.ended_at = run.ended
            record.events = events
            record.diff = diff
            record.artifacts = artifacts
            record.note = note
            session.add(record)
            session.commit()

    def mark_interrupted(self, key: str, note: str) -> None:
        with Session(self.engine) as session:
            record = session.get(ExecutionRunRecord, key)
            if record is not None and record.status == STARTED:
                record.status = INTERRUPTED
                record.ended_at = utcnow()
                record.note = note
                session.add(record)
                session.commit()

    def run(self, key: str) -> ExecutionRunRecord | None:
        with Session(self.engine) as session:
            record = session.get(ExecutionRunRecord, key)
            if record is not None:
                session.expunge(record)
            return record

    def captured(self, key: str) -> dict[str, Any]:
        """The values the run ``key`` published with set_stats ({} when none)."""
        record = self.run(key)
        for event in reversed(record.events if record is not None else []):
            if event.get("event") == CAPTURED_EVENT and isinstance(event.get("captured"), dict):
                found: dict[str, Any] = event["captured"]
                return found
        return {}

    def runs(self, incident_id: str) -> list[ExecutionRunRecord]:
        """Every run of an incident, in the order they started (the timeline's runs)."""
        with Session(self.engine) as session:
            records = list(
                session.exec(
                    select(ExecutionRunRecord)
                    .where(ExecutionRunRecord.incident_id == incident_id)
                    .order_by(col(ExecutionRunRecord.started_at))
                )
            )
            for record in records:
                record.started_at = aware(record.started_at)
                record.ended_at = aware(record.ended_at) if record.ended_at else None
                session.expunge(record)
            return records

    # -- autonomy -----------------------------------------------------------------------

    def autonomy(self, key: AutonomyKey) -> AutonomyState | None:
        with Session(self.engine) as session:
            record = session.get(AutonomyRecord, str(key))
            return _state(record) if record else None

    def autonomy_states(self) -> list[AutonomyState]:
        with Session(self.engine) as session:
            return [_state(r) for r in session.exec(select(AutonomyRecord))]

    def save_autonomy(self, state: AutonomyState) -> None:
        with Session(self.engine) as session:
            _store_state(session, state)
            try:
                session.commit()
            except IntegrityError:  # two first decisions of one key at once: one row wins
                session.rollback()

    def record_outcome(
        self,
        incident_id: str,
        state: AutonomyState,
        verified: bool,
        cfg: PolicyConfig | None = None,
    ) -> AutonomyState:
        """Count one verified outcome once (by incident) and store the key's new state."""
        with Session(self.engine) as session:
            if session.get(AutonomyOutcomeRecord, incident_id) is not None:
                return state
            new = after_outcome(state, verified, incident_id, cfg)
            session.add(
                AutonomyOutcomeRecord(
                    incident_id=incident_id, key=str(state.key), verified=verified, at=utcnow()
                )
            )
            _store_state(session, new)
            session.commit()
        return new

    # -- shadow mode --------------------------------------------------------------------

    def record_shadow(
        self, incident_id: str, target: str, solution_id: str, playbook: str, mode: str, reason: str
    ) -> None:
        with Session(self.engine) as session:
            if session.get(ShadowRecord, incident_id) is None:
                session.add(
                    ShadowRecord(
                        incident_id=incident_id,
                        target=target,
                        solution_id=solution_id,
                        playbook=playbook,
                        mode=mode,
                        reason=reason,
                        at=utcnow(),
                    )
                )
                session.commit()

    def shadowed(self, target: str | None = None) -> list[ShadowRecord]:
        with Session(self.engine) as session:
            query = select(ShadowRecord)
            if target is not None:
                query = query.where(ShadowRecord.target == target)
            records = list(session.exec(query.order_by(col(ShadowRecord.at))))
            for record in records:
                session.expunge(record)
            return records

    # -- pause / resume of automatic fixes --------------------------------------------------

    def pause(self, target: str | None, by: str, reason: str = "") -> None:
        """Pause automatic fixes on ``target`` (None: everywhere); pausing again updates who
        and why."""
        with Session(self.engine) as session:
            key = target or EVERYWHERE
            record = session.get(PauseRecord, key) or PauseRecord(target=key, by=by, since=utcnow())
            record.by, record.reason, record.since = by, reason, utcnow()
            session.add(record)
            session.commit()

    def resume(self, target: str | None) -> bool:
        """Lift the pause of ``target`` (None: the global one); False when there was none.
        Lifting the global pause leaves per-target pauses in place."""
        with Session(self.engine) as session:
            record = session.get(PauseRecord, target or EVERYWHERE)
            if record is None:
                return False
            session.delete(record)
            session.commit()
            return True

    def automation(self) -> AutomationStatus:
        with Session(self.engine) as session:
            records = list(session.exec(select(PauseRecord).order_by(col(PauseRecord.target))))
        everywhere = next((r for r in records if r.target == EVERYWHERE), None)
        return AutomationStatus(
            paused=everywhere is not None,
            by=everywhere.by if everywhere else None,
            since=aware(everywhere.since) if everywhere else None,
            reason=everywhere.reason if everywhere else "",
            targets=tuple(
                TargetPause(target=r.target, by=r.by, reason=r.reason, since=aware(r.since))
                for r in records
                if r.target != EVERYWHERE
            ),
        )

    # -- automatic actions (hourly limits) ------------------------------------------------

    def note_auto_action(
        self,
        incident_id: str,
        target: str,
        solution_id: str,
        limit: Callable[[], str | None] | None = None,
    ) -> str | None:
        """Book one automatic execution; with ``limit`` (the hourly limits, read in SQL),
        only when it says None, else its reason is returned and nothing is booked. On
        PostgreSQL the check and the booking hold one advisory lock, so workers deciding
        at the same moment never overrun a limit together."""
        with Session(self.engine) as session:
            if self.fence is not None:
                self.fence.hold(session, target)
            if self.engine.dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUTO_LOCK})
            if session.get(AutoActionRecord, incident_id) is not None:
                return None
            if limit is not None and (why := limit()) is not None:
                session.rollback()
                return why
            session.add(
                AutoActionRecord(
                    incident_id=incident_id, target=target, solution_id=solution_id, at=utcnow()
                )
            )
            session.commit()
        return None

    def auto_action_targets(self, within: timedelta) -> dict[str, int]:
        """Automatic actions of the last ``within``, counted by target."""
        since = utcnow() - within
        with Session(self.engine) as session:
            query = (
                select(AutoActionRecord.target, func.count())
                .where(col(AutoActionRecord.at) >= since)
                .group_by(AutoActionRecord.target)
            )
            return {target: int(n) for target, n in session.exec(query).all()}

    def auto_actions(self, target: str | None, within: timedelta) -> int:
        since = utcnow() - within
        with Session(self.engine) as session:
            query = select(func.count()).select_from(AutoActionRecord)
            query = query.where(col(AutoActionRecord.at) >= since)
            if target is not None:
                query = query.where(AutoActionRecord.target == target)
            return int(session.exec(query).one())


def _store_state(session: Session, state: AutonomyState) -> None:
    """Insert or update the key's row (the caller commits)."""
    record = session.get(AutonomyRecord, str(state.key)) or AutonomyRecord(
        key=str(state.key),
        solution_id=state.key.solution_id,
        fault=state.key.fault,
        target_class=state.key.target_class,
        level=state.level,
        updated_at=utcnow(),
    )
    record.level = state.level.value
    record.successes = state.successes
    record.failures = state.failures
    record.streak = state.streak
    record.reason = state.reason
    record.updated_at = utcnow()
    session.add(record)
