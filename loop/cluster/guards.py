"""What must hold across workers, in SQL: the chat replay guard and the stream tickets.

    guard = SqlReplayGuard(engine)            # api/chatops: a signed request taken once
    guard.first_time(replay_key(ts, body), now)
    tickets = TicketTable(engine)             # api/events.py: single-use stream tickets
    nonce = tickets.issue("alice", "viewer", ttl_s=60)
    tickets.redeem(nonce)                     # ("alice", "viewer") once, then None

Insert-or-refuse on a primary key: whichever worker a request reaches, the second copy
of it is refused. Expired rows are deleted as new ones come (bounded by the traffic of
one window). Each works on SQLite too (one worker), so there is one code path.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from kernel.models import utcnow
from loop.db.migrate import ensure_schema
from loop.db.schema import ChatReplayRecord, StreamTicketRecord

PRUNE_EVERY_S = 30.0


class SqlReplayGuard:
    """``ReplayGuard`` (api/chatops/signing.py) shared by every worker."""

    def __init__(self, engine: Engine, window_s: float = 300.0) -> None:
        self.engine = engine
        self.window_s = window_s
        self._pruned = 0.0
        ensure_schema(engine)

    def first_time(self, key: str, now: float) -> bool:
        """True the first time any worker is offered this key."""
        del now  # the expiry is stored with the row
        with self.engine.begin() as conn:
            if time.monotonic() - self._pruned > PRUNE_EVERY_S:
                self._pruned = time.monotonic()
                conn.execute(
                    delete(ChatReplayRecord).where(col(ChatReplayRecord.expires_at) < utcnow())
                )
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(ChatReplayRecord).values(
                        digest=key, expires_at=utcnow() + timedelta(seconds=self.window_s)
                    )
                )
        except IntegrityError:
            return False
        return True


class TicketTable:
    """Single-use tickets, redeemable on any worker (the nonce is the ticket)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_schema(engine)

    def issue(self, name: str, role: str, ttl_s: float) -> str:
        nonce = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                delete(StreamTicketRecord).where(col(StreamTicketRecord.expires_at) < utcnow())
            )
            conn.execute(
                insert(StreamTicketRecord).values(
                    nonce=nonce,
                    name=name,
                    role=role,
                    expires_at=utcnow() + timedelta(seconds=ttl_s),
                )
            )
        return nonce

    def redeem(self, nonce: str) -> tuple[str, str] | None:
        """Who it was issued to, the first time and before it expires; else None."""
        if not nonce or len(nonce) > 64:
            return None
        with self.engine.begin() as conn:
            row = conn.execute(
                delete(StreamTicketRecord)
                .where(
                    col(StreamTicketRecord.nonce) == nonce,
                    col(StreamTicketRecord.expires_at) >= utcnow(),
                )
                .returning(col(StreamTicketRecord.name), col(StreamTicketRecord.role))
            ).first()
        return (row.name, row.role) if row is not None else None
