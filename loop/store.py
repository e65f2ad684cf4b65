"""SQL persistence of incidents and their audit trail (SQLModel; SQLite or PostgreSQL).

    store = IncidentStore("sqlite:///var/mendloop.db")
    incident_id = store.open_incident("pm-site-1", findings)
    store.apply(incident_id, Transition(State.analyzed, "rules fired", report=report))

Every transition is checked against the state machine and written in the same
transaction as the incident row, guarded by the state it came from, so two workers can
never both move an incident out of one state (the loser gets IllegalTransition).
The tables are loop/db/schema.py's, made and migrated by Alembic when the store opens
(loop/db/migrate.py; an older database is migrated, never dropped).
"""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import CursorResult, update
from sqlmodel import Session, col, select

from kernel.approval import Approval, ApprovalPlan
from kernel.errors import IllegalTransition
from kernel.models import Decision, Execution, Finding, RCAReport, Verification, utcnow
from kernel.plan import RemediationPlan
from kernel.state import TERMINAL, State, check_transition
from loop.cluster.fence import Fence
from loop.db.engine import aware, make_engine
from loop.db.migrate import ensure_schema
from loop.db.schema import IncidentRecord, TransitionRecord
from loop.transition import KEEP, Field, Transition


class TransitionView(BaseModel):
    model_config = ConfigDict(frozen=True)

    from_state: State | None
    to_state: State
    at: datetime
    note: str

    _aware = field_validator("at")(aware)


class IncidentView(BaseModel):
    """An incident as the rest of the code and the API see it: typed, with its timeline."""

    model_config = ConfigDict(frozen=True)

    id: str
    target: str
    state: State
    fault: str | None
    reason: str
    opened_at: datetime
    updated_at: datetime
    findings: tuple[Finding, ...]
    report: RCAReport | None
    decision: Decision | None
    execution: Execution | None
    verification: Verification | None
    remediation: RemediationPlan | None = None  # what will run (None: decided before plans)
    plan: ApprovalPlan | None = None  # what a person is asked to approve (awaiting_approval)
    approval: Approval | None = None  # who approved which plan hash
    timeline: tuple[TransitionView, ...] = ()

    _aware = field_validator("opened_at", "updated_at")(aware)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


class IncidentStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        ensure_schema(self.engine)  # Alembic, once per engine (loop/db/migrate.py)

    def open_incident(
        self, target: str, findings: list[Finding], opened_at: datetime | None = None
    ) -> str:
        now = opened_at or utcnow()
        incident_id = uuid.uuid4().hex[:12]
        with Session(self.engine) as session:
            session.add(
                IncidentRecord(
                    id=incident_id,
                    target=target,
                    state=State.open,
                    opened_at=now,
                    updated_at=now,
                    findings=[f.model_dump(mode="json") for f in findings],
                )
            )
            session.flush()
            session.add(
                TransitionRecord(
                    incident_id=incident_id,
                    from_state=None,
                    to_state=State.open,
                    at=now,
                    note=f"{len(findings)} finding(s) on {target}",
                )
            )
            session.commit()
        return incident_id

    def apply(
        self, incident_id: str, transition: Transition, fence: Fence | None = None
    ) -> IncidentView:
        """Move an incident along one edge of the state machine, storing what the step
        produced (a payload field given as None clears it, e.g. a plan that no longer
        holds). IllegalTransition: not an edge from where it is, or it moved meanwhile.
        ``fence``: the loop's moves on several workers, made only while this worker still
        holds the target's lease (LeaseLost otherwise, loop/cluster/fence.py)."""
        return self._move(
            incident_id,
            transition.state,
            transition.note,
            transition.payload(),
            transition.fault,
            transition.reason,
            fence,
        )

    def transition(
        self,
        incident_id: str,
        to_state: State,
        note: str = "",
        *,
        fault: str | None = None,
        reason: str | None = None,
        report: Field[RCAReport] = KEEP,
        decision: Field[Decision] = KEEP,
        remediation: Field[RemediationPlan] = KEEP,
        execution: Field[Execution] = KEEP,
        verification: Field[Verification] = KEEP,
        plan: Field[ApprovalPlan] = KEEP,
        approval: Field[Approval] = KEEP,
    ) -> IncidentView:
        """``apply`` spelled out (tests, people's actions)."""
        return self.apply(
            incident_id,
            Transition(
                to_state,
                note,
                report=report,
                decision=decision,
                remediation=remediation,
                execution=execution,
                verification=verification,
                plan=plan,
                approval=approval,
                fault=fault,
                reason=reason,
            ),
        )

    def _move(
        self,
        incident_id: str,
        to_state: State,
        note: str,
        payload: dict[str, BaseModel | None],
        fault: str | None,
        reason: str | None,
        fence: Fence | None = None,
    ) -> IncidentView:
        now = utcnow()
        with Session(self.engine) as session:
            record = session.get(IncidentRecord, incident_id)
            if record is None:
                raise IllegalTransition(f"incident {incident_id} does not exist")
            if fence is not None:
                fence.hold(session, record.target)
            current = State(record.state)
            check_transition(current, to_state)
            values: dict[str, Any] = {"state": to_state, "updated_at": now}
            for name, value in payload.items():
                values[name] = value.model_dump(mode="json") if value is not None else None
            if fault is not None:
                values["fault"] = fault
            if reason is not None:
                values["reason"] = reason
            result = session.execute(
                update(IncidentRecord)
                .where(col(IncidentRecord.id) == incident_id, col(IncidentRecord.state) == current)
                .values(**values)
            )
            if cast(CursorResult[Any], result).rowcount != 1:  # an UPDATE's result
                session.rollback()
                raise IllegalTransition(
                    f"incident {incident_id} left {current} concurrently; {to_state} refused"
                )
            session.add(
                TransitionRecord(
                    incident_id=incident_id,
                    from_state=current,
                    to_state=to_state,
                    at=now,
                    note=note,
                )
            )
            session.commit()
        view = self.get(incident_id)
        assert view is not None
        return view

    def _view(self, session: Session, record: IncidentRecord, timeline: bool) -> IncidentView:
        transitions: list[TransitionRecord] = []
        if timeline:
            transitions = list(
                session.exec(
                    select(TransitionRecord)
                    .where(TransitionRecord.incident_id == record.id)
                    .order_by(col(TransitionRecord.id))
                )
            )
        return IncidentView.model_validate(
            {
                **record.model_dump(),
                "timeline": [
                    TransitionView.model_validate(t, from_attributes=True) for t in transitions
                ],
            }
        )

    def get(self, incident_id: str) -> IncidentView | None:
        with Session(self.engine) as session:
            record = session.get(IncidentRecord, incident_id)
            return self._view(session, record, timeline=True) if record else None

    def list(
        self, state: State | None = None, target: str | None = None, limit: int = 100
    ) -> list[IncidentView]:
        with Session(self.engine) as session:
            query = select(IncidentRecord)
            if state is not None:
                query = query.where(IncidentRecord.state == state)
            if target is not None:
                query = query.where(IncidentRecord.target == target)
            query = query.order_by(col(IncidentRecord.opened_at).desc()).limit(limit)
            return [self._view(session, r, timeline=False) for r in session.exec(query)]

    def unfinished(self, target: str | None = None) -> builtins.list[IncidentView]:
        """Incidents still in flight (a restarted daemon picks them up), oldest first."""
        with Session(self.engine) as session:
            query = select(IncidentRecord).where(
                col(IncidentRecord.state).not_in([s.value for s in TERMINAL])
            )
            if target is not None:
                query = query.where(IncidentRecord.target == target)
            query = query.order_by(col(IncidentRecord.opened_at))
            return [self._view(session, r, timeline=False) for r in session.exec(query)]

    def close(self) -> None:
        self.engine.dispose()
