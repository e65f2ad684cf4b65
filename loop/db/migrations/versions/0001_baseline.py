"""The baseline: the schema of mendloop before Alembic (main at 098eeb9), table for table.

A database made by that code has these tables (some only when their feature was used:
``api_token``/``audit_event`` with API auth, ``chat_thread`` with chat) and no
``alembic_version``; loop/db/migrate.py completes it with ``BASELINE.create_all`` (only
what is missing, plus the columns the old code added by hand) and stamps it here. A new
database gets them from ``upgrade``.

Revision ID: 0001
Revises: -
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BASELINE = sa.MetaData()
# payload columns the code before Alembic added to an older ``incident`` table itself
# (ALTER TABLE ... ADD COLUMN, loop/store.py ``_add_columns``)
ADDED_BY_HAND = {"incident": ("plan", "approval")}

sa.Table(
    "api_token",
    BASELINE,
    sa.Column("id", sa.String(length=16), nullable=False),
    sa.Column("name", sa.String(length=100), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("secret_sha256", sa.String(length=64), nullable=False),
    sa.Column("created_by", sa.String(length=100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_api_token_name", "name"),
)

sa.Table(
    "audit_event",
    BASELINE,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(length=100), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("via", sa.String(length=16), nullable=False),
    sa.Column("method", sa.String(length=8), nullable=False),
    sa.Column("path", sa.String(length=500), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("client", sa.String(length=100), nullable=False),
    sa.Column("detail", sa.String(length=2000), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_audit_event_actor", "actor"),
    sa.Index("ix_audit_event_at", "at"),
)

sa.Table(
    "auto_action",
    BASELINE,
    sa.Column("incident_id", sa.String(length=32), nullable=False),
    sa.Column("target", sa.String(length=200), nullable=False),
    sa.Column("solution_id", sa.String(length=200), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("incident_id"),
    sa.Index("ix_auto_action_at", "at"),
    sa.Index("ix_auto_action_target", "target"),
)

sa.Table(
    "automation_pause",
    BASELINE,
    sa.Column("target", sa.String(length=200), nullable=False),
    sa.Column("by", sa.String(length=200), nullable=False),
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("target"),
)

sa.Table(
    "autonomy",
    BASELINE,
    sa.Column("key", sa.String(length=400), nullable=False),
    sa.Column("solution_id", sa.String(length=200), nullable=False),
    sa.Column("fault", sa.String(length=200), nullable=False),
    sa.Column("target_class", sa.String(length=200), nullable=False),
    sa.Column("level", sa.String(length=16), nullable=False),
    sa.Column("successes", sa.Integer(), nullable=False),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("streak", sa.Integer(), nullable=False),
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("key"),
)

sa.Table(
    "autonomy_outcome",
    BASELINE,
    sa.Column("incident_id", sa.String(length=32), nullable=False),
    sa.Column("key", sa.String(length=400), nullable=False),
    sa.Column("verified", sa.Boolean(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("incident_id"),
)

sa.Table(
    "chat_thread",
    BASELINE,
    sa.Column("incident_id", sa.String(length=32), nullable=False),
    sa.Column("channel", sa.String(length=100), nullable=False),
    sa.Column("ts", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("incident_id"),
)

sa.Table(
    "execution_run",
    BASELINE,
    sa.Column("key", sa.String(length=200), nullable=False),
    sa.Column("incident_id", sa.String(length=32), nullable=False),
    sa.Column("phase", sa.String(length=32), nullable=False),
    sa.Column("playbook", sa.String(length=300), nullable=False),
    sa.Column("status", sa.String(length=32), nullable=False),
    sa.Column("rc", sa.Integer(), nullable=True),
    sa.Column("changed", sa.Integer(), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("events", sa.JSON(), nullable=True),
    sa.Column("diff", sa.JSON(), nullable=True),
    sa.Column("artifacts", sa.String(), nullable=True),
    sa.Column("note", sa.String(), nullable=False),
    sa.PrimaryKeyConstraint("key"),
    sa.Index("ix_execution_run_incident_id", "incident_id"),
)

sa.Table(
    "incident",
    BASELINE,
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("target", sa.String(length=200), nullable=False),
    sa.Column("state", sa.String(length=32), nullable=False),
    sa.Column("fault", sa.String(length=200), nullable=True),
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("findings", sa.JSON(), nullable=True),
    sa.Column("report", sa.JSON(), nullable=True),
    sa.Column("decision", sa.JSON(), nullable=True),
    sa.Column("execution", sa.JSON(), nullable=True),
    sa.Column("verification", sa.JSON(), nullable=True),
    sa.Column("plan", sa.JSON(), nullable=True),
    sa.Column("approval", sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_incident_state", "state"),
    sa.Index("ix_incident_target", "target"),
)

sa.Table(
    "outcome_outbox",
    BASELINE,
    sa.Column("case_id", sa.String(length=64), nullable=False),
    sa.Column("incident_id", sa.String(length=32), nullable=False),
    sa.Column("case", sa.JSON(), nullable=False),
    sa.Column("decision", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.String(length=500), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("refused", sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint("case_id"),
    sa.Index("ix_outcome_outbox_delivered_at", "delivered_at"),
    sa.Index("ix_outcome_outbox_incident_id", "incident_id"),
)

sa.Table(
    "shadow_decision",
    BASELINE,
    sa.Column("incident_id", sa.String(length=32), nullable=False),
    sa.Column("target", sa.String(length=200), nullable=False),
    sa.Column("solution_id", sa.String(length=200), nullable=False),
    sa.Column("playbook", sa.String(length=300), nullable=False),
    sa.Column("mode", sa.String(length=16), nullable=False),
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("incident_id"),
    sa.Index("ix_shadow_decision_target", "target"),
)

sa.Table(
    "incident_transition",
    BASELINE,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("incident_id", sa.String(length=32), nullable=False),
    sa.Column("from_state", sa.String(length=32), nullable=True),
    sa.Column("to_state", sa.String(length=32), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.String(), nullable=False),
    sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_incident_transition_incident_id", "incident_id"),
)


def upgrade() -> None:
    BASELINE.create_all(op.get_bind())


def downgrade() -> None:
    BASELINE.drop_all(op.get_bind())
