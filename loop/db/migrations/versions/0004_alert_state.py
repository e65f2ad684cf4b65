"""The Alertmanager intake's state in SQL (loop/alertstate.py), so a restart loses nothing:
the alerts firing now, the resolutions taken (for dedupe) and the newest unmapped alerts.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _at(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "alert_firing",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        _at("starts_at"),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("series", sa.String(length=200), nullable=False),
        _at("seen_at"),
        sa.PrimaryKeyConstraint("fingerprint"),
    )
    op.create_index("ix_alert_firing_target", "alert_firing", ["target"])
    op.create_index("ix_alert_firing_seen_at", "alert_firing", ["seen_at"])
    op.create_table(
        "alert_resolved",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        _at("starts_at"),
        _at("resolved_at"),
        sa.PrimaryKeyConstraint("fingerprint", "starts_at"),
    )
    op.create_index("ix_alert_resolved_resolved_at", "alert_resolved", ["resolved_at"])
    op.create_table(
        "alert_unmapped",
        sa.Column("id", sa.Integer(), nullable=False),
        _at("received_at"),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("alertname", sa.String(length=1024), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    for name in ("alert_unmapped", "alert_resolved", "alert_firing"):
        op.drop_table(name)
