"""Fencing: a write that matters is made only while its writer holds the target's lease
with the epoch it was granted, judged by the DATABASE clock, in the write's own transaction.

    fence = LeaseFence(worker_id, epoch_of)        # epoch_of(target): the epoch held, or None
    with Session(engine) as session:
        fence.hold(session, target)                # LeaseLost unless still ours (row FOR SHARE)
        ... the incident UPDATE / the execution_run INSERT ...
        session.commit()

The lease row is read ``FOR SHARE``: a worker taking the target over (``FOR UPDATE SKIP
LOCKED``) skips it until this transaction ends, and after that the epoch has changed, so
a paused-then-resumed old owner can never write in the new owner's time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy import text
from sqlmodel import Session

from kernel.errors import IllegalTransition

HOLD = text(
    "SELECT epoch FROM target_lease WHERE target = :target AND worker_id = :worker "
    "AND epoch = :epoch AND expires_at > now() FOR SHARE"
)


class LeaseLost(IllegalTransition):
    """This worker no longer holds the target (expired, taken over): stop, write nothing."""


class Fence(Protocol):
    def hold(self, session: Session, target: str) -> None: ...


class LeaseFence:
    """The fence of one worker (PostgreSQL only: SQLite has one worker, no fence)."""

    def __init__(self, worker_id: str, epoch_of: Callable[[str], int | None]) -> None:
        self.worker_id = worker_id
        self.epoch_of = epoch_of
        self.refused = 0  # writes refused for a lost lease (for /metrics and the logs)

    def hold(self, session: Session, target: str) -> None:
        epoch = self.epoch_of(target)
        if epoch is not None:
            row = session.execute(
                HOLD, {"target": target, "worker": self.worker_id, "epoch": epoch}
            ).first()
            if row is not None:
                return
        self.refused += 1
        raise LeaseLost(f"worker {self.worker_id} no longer holds the lease of {target!r}")
