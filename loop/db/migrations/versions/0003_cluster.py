"""Scale-out (issue 18, loop/cluster/): the live workers, the target leases with their
fencing epochs, and what workers share instead of holding per process: the chat replay
guard, single-use event-stream tickets and the key forwarded samples are signed with.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "worker",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        _at("started_at"),
        _at("heartbeat_at"),
        sa.Column("api_url", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_worker_heartbeat_at", "worker", ["heartbeat_at"])
    op.create_table(
        "target_lease",
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("worker_id", sa.String(length=100), nullable=True),
        _at("expires_at"),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("target"),
    )
    op.create_index("ix_target_lease_worker_id", "target_lease", ["worker_id"])
    op.create_table(
        "chat_replay",
        sa.Column("digest", sa.String(length=64), nullable=False),
        _at("expires_at"),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_chat_replay_expires_at", "chat_replay", ["expires_at"])
    op.create_table(
        "stream_ticket",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        _at("expires_at"),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_stream_ticket_expires_at", "stream_ticket", ["expires_at"])
    op.create_table(
        "cluster_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    for name in ("cluster_key", "stream_ticket", "chat_replay", "target_lease", "worker"):
        op.drop_table(name)
