"""Every SQL table of mendloop, in one module and one metadata (``SQLModel.metadata``).

    IncidentRecord, TransitionRecord        incidents and their audit trail (loop/store.py)
    ExecutionRunRecord                      keyed playbook runs (loop/ledger.py)
    AutonomyRecord, AutonomyOutcomeRecord   earned autonomy and the outcomes counted
    AutoActionRecord, ShadowRecord, PauseRecord   hourly limits, shadow mode, pauses
    OutcomeRecord                           outcomes on their way to the graph (loop/outbox.py)
    ApiTokenRecord, AuditRecord             API tokens and the audit log (api/auth.py)
    ChatThreadRecord                        incident -> its chat thread (api/chatops/sender.py)
    AlertFiringRecord, AlertResolvedRecord, AlertUnmappedRecord   Alertmanager intake state
                                            (loop/alertstate.py)

The schema is made and changed by Alembic only (loop/db/migrate.py applies it at start,
on SQLite and PostgreSQL alike): a change here needs a revision in loop/db/migrations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


# -- incidents (loop/store.py) ------------------------------------------------------------


class IncidentRecord(SQLModel, table=True):
    __tablename__ = "incident"

    id: str = Field(primary_key=True, max_length=32)
    target: str = Field(index=True, max_length=200)
    state: str = Field(index=True, max_length=32)
    fault: str | None = Field(default=None, max_length=200)
    reason: str = ""
    opened_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    findings: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    decision: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    execution: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    verification: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    plan: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    approval: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    remediation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # 0002


class TransitionRecord(SQLModel, table=True):
    __tablename__ = "incident_transition"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=32)
    from_state: str | None = Field(default=None, max_length=32)
    to_state: str = Field(max_length=32)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    note: str = ""


# -- remediation (loop/ledger.py) -----------------------------------------------------------


class ExecutionRunRecord(SQLModel, table=True):
    """One playbook invocation, keyed by its idempotency key: written before ansible
    starts, completed when it ends (``started`` after a crash: an interrupted run)."""

    __tablename__ = "execution_run"

    key: str = Field(primary_key=True, max_length=200)
    incident_id: str = Field(index=True, max_length=32)
    phase: str = Field(max_length=32)  # check | run | rollback | rollback_check | reconcile
    playbook: str = Field(max_length=300)
    status: str = Field(max_length=32)  # started, then a RunStatus value or interrupted
    rc: int | None = None
    changed: int = 0
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    events: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    diff: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    artifacts: str | None = None
    note: str = ""


class AutonomyRecord(SQLModel, table=True):
    """The earned autonomy of one (solution, fault, target class)."""

    __tablename__ = "autonomy"

    key: str = Field(primary_key=True, max_length=400)
    solution_id: str = Field(max_length=200)
    fault: str = Field(max_length=200)
    target_class: str = Field(max_length=200)
    level: str = Field(max_length=16)
    successes: int = 0
    failures: int = 0
    streak: int = 0
    reason: str = ""
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class AutonomyOutcomeRecord(SQLModel, table=True):
    """An incident whose outcome was counted (a resumed incident never counts twice)."""

    __tablename__ = "autonomy_outcome"

    incident_id: str = Field(primary_key=True, max_length=32)
    key: str = Field(max_length=400)
    verified: bool
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class AutoActionRecord(SQLModel, table=True):
    """One automatic execution, for the hourly limits."""

    __tablename__ = "auto_action"

    incident_id: str = Field(primary_key=True, max_length=32)
    target: str = Field(index=True, max_length=200)
    solution_id: str = Field(max_length=200)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class ShadowRecord(SQLModel, table=True):
    """What the loop would have done in shadow mode (nothing was executed)."""

    __tablename__ = "shadow_decision"

    incident_id: str = Field(primary_key=True, max_length=32)
    target: str = Field(index=True, max_length=200)
    solution_id: str = Field(max_length=200)
    playbook: str = Field(max_length=300)
    mode: str = Field(max_length=16)  # what it would have used: auto | approval | suggest
    reason: str = ""
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PauseRecord(SQLModel, table=True):
    """Automatic fixes paused everywhere (target ``*``) or on one target."""

    __tablename__ = "automation_pause"

    target: str = Field(primary_key=True, max_length=200)
    by: str = Field(max_length=200)
    reason: str = ""
    since: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


# -- learning (loop/outbox.py) --------------------------------------------------------------


class OutcomeRecord(SQLModel, table=True):
    """An outcome on its way to the knowledge graph (kept, with when, once delivered)."""

    __tablename__ = "outcome_outbox"

    case_id: str = Field(primary_key=True, max_length=64)  # incident-<id>: one per incident
    incident_id: str = Field(index=True, max_length=32)
    case: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    decision: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    attempts: int = 0
    last_error: str = Field(default="", max_length=500)
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )
    refused: bool = False  # the graph refused it (not an outage): kept for a person


# -- the API (api/auth.py, api/chatops/sender.py) -------------------------------------------


class ApiTokenRecord(SQLModel, table=True):
    __tablename__ = "api_token"

    id: str = Field(primary_key=True, max_length=16)
    name: str = Field(index=True, max_length=100)
    role: str = Field(max_length=16)
    secret_sha256: str = Field(max_length=64)
    created_by: str = Field(default="", max_length=100)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    actor: str = Field(index=True, max_length=100)
    role: str = Field(default="", max_length=16)
    via: str = Field(default="", max_length=16)
    method: str = Field(max_length=8)
    path: str = Field(max_length=500)
    status: int
    client: str = Field(default="", max_length=100)
    detail: str = Field(default="", max_length=2000)


class ChatThreadRecord(SQLModel, table=True):
    __tablename__ = "chat_thread"

    incident_id: str = Field(primary_key=True, max_length=32)
    channel: str = Field(default="", max_length=100)
    ts: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


# -- scale-out (loop/cluster/): workers, target leases, shared guards -------------------------


class WorkerRecord(SQLModel, table=True):
    """A live worker process; alive while ``heartbeat_at`` is within the lease TTL of the
    DATABASE clock (never a worker's own)."""

    __tablename__ = "worker"

    id: str = Field(primary_key=True, max_length=100)
    host: str = Field(max_length=200)
    pid: int
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    heartbeat_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    api_url: str = Field(default="", max_length=300)


class TargetLeaseRecord(SQLModel, table=True):
    """Which worker owns a target until when; ``epoch`` grows at every change of owner and
    fences the owner's writes (an old owner's epoch no longer matches)."""

    __tablename__ = "target_lease"

    target: str = Field(primary_key=True, max_length=200)
    worker_id: str | None = Field(default=None, index=True, max_length=100)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    epoch: int = 0


class ChatReplayRecord(SQLModel, table=True):
    """A signed chat request already taken (the replay guard shared by every worker)."""

    __tablename__ = "chat_replay"

    digest: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )


class StreamTicketRecord(SQLModel, table=True):
    """A single-use ticket to open the event stream (any worker redeems it, once)."""

    __tablename__ = "stream_ticket"

    nonce: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=100)
    role: str = Field(max_length=16)
    expires_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )


class ClusterKeyRecord(SQLModel, table=True):
    """The key workers sign forwarded samples with (made by the first worker)."""

    __tablename__ = "cluster_key"

    id: int = Field(default=1, primary_key=True)
    key: str = Field(max_length=128)


# -- Alertmanager's webhook (loop/alertstate.py): what fires, what resolved, what was not taken


class AlertFiringRecord(SQLModel, table=True):
    """An alert firing now: the episode (fingerprint, startsAt) and the (target, series) it
    holds at 1. ``seen_at``: its last notification (the oldest are let go past the cap)."""

    __tablename__ = "alert_firing"

    fingerprint: str = Field(primary_key=True, max_length=64)
    starts_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    target: str = Field(index=True, max_length=200)
    series: str = Field(max_length=200)
    seen_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class AlertResolvedRecord(SQLModel, table=True):
    """A resolution taken (an episode ended), kept so the same one again is a duplicate."""

    __tablename__ = "alert_resolved"

    fingerprint: str = Field(primary_key=True, max_length=64)
    starts_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), primary_key=True, nullable=False)
    )
    resolved_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )


class AlertUnmappedRecord(SQLModel, table=True):
    """An alert no alerts.yaml entry took, as the API shows it (the newest are kept)."""

    __tablename__ = "alert_unmapped"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    reason: str = Field(max_length=64)
    status: str = Field(max_length=16)
    fingerprint: str = Field(max_length=64)
    alertname: str | None = Field(default=None, max_length=1024)
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
